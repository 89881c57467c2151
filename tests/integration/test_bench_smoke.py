"""The benchmark suite's smoke mode runs end to end, so the benchmark code cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def table(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|--")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]  # past the header


def test_bench_smoke_produces_the_tables() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.suite", "--smoke"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    sections = {s.split("\n", 1)[0].split(" (")[0]: s for s in out.stdout.split("## ")[1:]}
    overhead = [r for r in table(sections["Gateway overhead"]) if len(r) == 10]
    assert {"direct", "passthrough (75-line Litestar + aiohttp)", "(b) gateway, forced tier",
            "(c) gateway, auto, default classifier (tiered)", "(d) gateway, auto, embedding classifier",
            "(b) with the request log off"} <= {r[0] for r in overhead}
    for r in overhead:  # every row measured real requests, without errors
        assert float(r[3].replace(",", "")) > 0 and r[-1] == "0", r
    processes = {r[0]: r for r in table(sections["Gateway overhead"]) if len(r) == 4 and r[0] != "process"}
    assert {"gateway", "gateway-embedding", "passthrough"} <= set(processes)
    assert all(float(r[2]) > 0 for r in processes.values())
    targets = table(sections["Targets"])
    assert len(targets) >= 8 and all(r[-1] in ("yes", "no", "not measured") for r in targets)
    stack = table(sections["Server stack"])
    assert {(r[0], r[1]) for r in stack} == {(s, q) for s in ("httptools + uvloop + hiredis", "httptools + uvloop",
                                                       "h11 + asyncio")
                                             for q in ("exact cache hit", "upstream call (cache off)")}
    assert all(float(r[2]) > 0 and float(r[5]) > 0 and r[-1] == "0" for r in stack), stack
    writer = table(sections["Accounting: request-log writer"])
    assert len(writer) == 2 and all(float(r[1].replace(",", "")) > 0 for r in writer)
    cache = table(sections["Cache through HTTP"])
    assert [r[0] for r in cache] == ["miss", "exact hit", "semantic hit"] and all(r[-1] == "0" for r in cache)
    clf = table(sections["Classifiers"])
    assert [r[0].split(" (")[0] for r in clf] == ["heuristic", "tiered", "tiered", "difficulty", "difficulty",
                                                  "difficulty on MiniLM", "embedding", "embedding", "llm"]
    assert all(float(r[1]) > 0 for r in clf)


def test_gpu_bench_runs_and_checks_against_a_cpu_reference(tmp_path: Path) -> None:
    # On this CPU machine it measures the CPU backend; on a GPU it adds the cuda rows (docs/benchmarks.md).
    ref = tmp_path / "ref.npz"
    made = subprocess.run([sys.executable, "-m", "bench.gpu", "--write-reference", str(ref)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-3000:]
    out = subprocess.run([sys.executable, "-m", "bench.gpu", "--reference", str(ref), "--n", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = table(out.stdout)
    assert [r[0] for r in rows] == ["difficulty (static embedding + head, cpu), 200 tokens",
                                    *(f"{name}, {size} tokens" for size in (200, 20)
                                      for name in ("difficulty on MiniLM (onnx, cpu fp32)",
                                                   "embedding (MiniLM + head, onnx, cpu fp32)"))]
    assert all(float(r[1]) > 0 and float(r[5].replace(",", "")) > 0 for r in rows)
    assert "cosine to the CPU vectors min 1.0000" in out.stdout and "(max difference 0.00000)" in out.stdout


def test_reliability_bench_smoke_mode() -> None:
    """bench.reliability --smoke: 20 streams, a few seconds sustained with a limited key beside, a short
    database outage and a short soak; no errors, every request logged, the limited key's 429s counted."""
    out = subprocess.run([sys.executable, "-m", "bench.reliability", "--smoke"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    sections = {s.split("\n", 1)[0]: table(s) for s in out.stdout.split("## ")[1:]}
    (streams,) = sections["streams"]
    assert streams[:3] == ["20", "40", "0"]
    unlimited, limited = sections["sustained"]
    assert unlimited[7] == "0" and limited[7] == "0"
    # the limit (20 a minute in smoke mode) answered exactly, the rest refused with 429
    assert limited[0].startswith("20 requests/min") and int(limited[8].split()[0]) > 0
    assert limited[8].endswith("(20 answered)")
    (outage,) = sections["outage"]
    assert outage[4] == "0" and outage[5] == outage[3]  # no error; every request's row written
    (soak,) = sections["soak"]
    assert soak[2] == "0"
