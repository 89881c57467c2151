"""`python -m bench.hotpath --smoke` runs end to end and prints its table (issue 27's benchmark).

Only the table's shape is checked, never a timing: the figures are benchmark ratios (docs/benchmarks.md).
"""

from __future__ import annotations

import re
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
    targets = ["direct (fake upstream)", "passthrough (bench/passthrough.py)",
               "floor: passthrough + the miss's I/O (bench/floor.py)", "gateway, default config",
               "gateway, cache.semantic = false"]
    for body in ("JSON", "SSE"):
        for conns in (1, 16):
            for target in targets:
                assert any(r.startswith(f"| {target} | {body} | {conns} |") for r in rows), (target, body, conns)
    served = [r for r in rows if r.startswith(("| gateway", "| floor"))]
    assert all(r.rstrip(" |").endswith("| 0") for r in served), "gateway or floor answered errors"  # error column
    assert "Default gateway's cache after the run:" in out.stdout
    # The floor did its I/O: three writes (settlement, exact SET, index entry) after each answer, none failed (a
    # stream its client left early writes none)
    done = next(line for line in out.stdout.splitlines() if line.startswith("floor: passthrough + the miss's I/O"))
    requests, writes, failed = (int(n) for n in re.findall(r"(\d+) (?:requests|writes|failed)", done))
    assert requests > 0 and failed == 0 and 0 < writes <= 3 * requests and writes % 3 == 0, done


def test_the_floor_does_the_parts_the_benchmark_names() -> None:
    from bench import floor, hotpath

    assert hotpath.PARTS == floor.PARTS
    assert all(set(step.split(",")) <= {"", *floor.PARTS} for step in hotpath.LADDER)


def test_semantic_index_smoke_prints_every_scope_and_way(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.semantic_index --smoke`: every scope share, searched every way, with the one the
    gateway picks; the nearest entry found by the exact brute force every time (recall 1.00: the recall
    column is computed, not copied)."""
    from bench import semantic_index

    assert semantic_index.main(["--smoke"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and "%" in r.split("|")[1]]
    for share in semantic_index.SHARES:
        mine = [r for r in rows if r.startswith(f"| {share} |")]
        for how in (*semantic_index.POLICIES, "knn_policy's pick (now)"):
            assert any(f"| {how}" in r for r in mine), (share, how)
        assert all(r.rstrip(" |").endswith("1.00") for r in mine if "| brute force |" in r)
