"""`python -m bench.learning_latency --smoke` runs end to end and prints both rows and the learning counters.

Only the table's shape and that sampling happened (judgements > 0 on the sampled side) are checked, never a
timing: the latency claim is the benchmark's ratio (docs/learning.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cache.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
OFF, ON = "learning off (sample_rate 0)", "learning on (sample_rate 1.0)"


@pytest.mark.skipif(shutil.which("/usr/bin/wrk") is None, reason="wrk is not installed")
def test_learning_bench_smoke_prints_both_rows_and_judgements(redis_stack: EmbeddedRedis) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.learning_latency", "--smoke", "--redis", redis_stack.url],
                         cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for name in (OFF, ON):
        for conns in (1, 8):
            assert any(line.startswith(f"| {name} | {conns} |") for line in lines), (name, conns)
    header = next(line for line in lines if line.startswith("| gateway | sampled"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    counters = {}
    for name in (OFF, ON):
        row = next(line for line in lines if line.startswith(f"| {name} |") and line.count("|") == header.count("|"))
        counters[name] = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
    assert int(counters[ON]["judged"]) > 0, counters[ON]
    assert int(counters[OFF]["sampled"]) == 0, counters[OFF]
