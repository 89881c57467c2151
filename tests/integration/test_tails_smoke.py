"""`python -m bench.tails --smoke` runs end to end under wrk and prints its four tables (never timings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def rows(section: str) -> list[list[str]]:
    lines = [ln for ln in section.splitlines() if ln.startswith("|") and not ln.startswith("|--")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_tails_smoke_produces_the_tables() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.tails", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    sections = {s.split("\n", 1)[0].split(" (")[0]: rows(s) for s in out.stdout.split("## ")[1:]}
    assert set(sections) == {"Tails and event-loop stalls", "Workers", "Cost against conversation size"}
    tails = [r for r in sections["Tails and event-loop stalls"] if len(r) == 13][1:]
    names = ("passthrough (Litestar + aiohttp)", "gateway, forced route, log on", "the same, tune_gc = false",
             "the same, request log off")
    assert {(r[0], r[1]) for r in tails} == {(s, b) for s in names for b in ("JSON", "SSE")}
    for r in tails:  # real requests, none failed; the gateways' rows read their event-loop lag from /metrics
        assert float(r[2].replace(",", "")) > 0 and r[-1] == "0", r
        assert (r[8] == "–") == r[0].startswith("passthrough"), r
    targets = [r for r in sections["Tails and event-loop stalls"] if len(r) == 3][1:]
    assert len(targets) == 4 and all(r[2] in ("yes", "no") for r in targets)
    workers = sections["Workers"][1:]
    assert [r[0] for r in workers] == ["--workers 1", "--workers 2"] and all(r[-1] == "0" for r in workers)
    growth = sections["Cost against conversation size"][1:]
    assert [(r[0], r[1]) for r in growth] == [("1", "1 kB"), ("100", "100 kB")]
    assert all(r[-1] == "0" and float(r[2]) > 0 for r in growth)
    assert (ROOT / "bench" / "results" / "tails-smoke.md").read_text().strip() == out.stdout.strip()
