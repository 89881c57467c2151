"""The benchmark suite's smoke mode runs end to end, so the benchmark code cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_produces_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.suite", "--smoke"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    scenarios = {r.split("|")[1].strip() for r in rows[1:]}
    assert {"direct", "gateway, forced tier", "gateway, auto (heuristic)"} <= scenarios
    # Every row measured real requests without errors.
    for r in rows[2:]:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[3].replace(",", "")) > 0 and cells[-1] == "0", r
    assert "start-up to first answered request" in out.stdout
