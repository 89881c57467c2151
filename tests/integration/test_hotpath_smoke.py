"""`python -m bench.hotpath --smoke` runs end to end and prints its table (issue 27's benchmark).

Only the table's shape is checked, never a timing: the figures are benchmark ratios (docs/benchmarks.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("/usr/bin/wrk") is None, reason="wrk is not installed")
def test_hotpath_smoke_prints_every_row() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.hotpath", "--smoke"], cwd=ROOT, capture_output=True,
                         text=True, timeout=540)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| target")]
    targets = ["direct (fake upstream)", "passthrough (bench/passthrough.py)", "gateway, default config",
               "gateway, cache.semantic = false"]
    for body in ("JSON", "SSE"):
        for conns in (1, 16):
            for target in targets:
                assert any(r.startswith(f"| {target} | {body} | {conns} |") for r in rows), (target, body, conns)
    gateway_rows = [r for r in rows if r.startswith("| gateway")]
    assert all(r.rstrip(" |").endswith("| 0") for r in gateway_rows), "gateway answered errors"  # error column
    assert "Default gateway's cache after the run:" in out.stdout
