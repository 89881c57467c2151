"""The studies' quick modes run end to end on the repository's data, so the research code cannot rot."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.test_bench_smoke import table

ROOT = Path(__file__).resolve().parents[2]


def test_guard_models_bench_trains_a_cross_encoder_and_tables_every_model(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # The hand-made pairs stand in for the Quora ones (not redistributable, not in the repository): 50 near misses,
    # 50 paraphrases. One training step of 4 rows per fold on the CPU, through MiniLM's first layer only: this checks
    # the code path, not the model.
    hand = json.loads((ROOT / "tests" / "data" / "cache_pairs.json").read_text())
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"text_a": a, "text_b": b, "label": label}) + "\n"
                            for key, label in (("near_miss", 0), ("paraphrase", 1)) for a, b in hand[key]))
    scores = tmp_path / "ce.npy"
    # Both runs in this process (`python -m bench.studies.guard_models ARGS` is `main(ARGS)`): torch and
    # transformers are imported once, not twice. Their own warnings are theirs, not this test's.
    from bench.studies.guard_models import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--data", str(data), "--train-cross-encoder", str(scores), "--max-steps", "1", "--batch", "4",
                     "--layers", "1"]) == 0
        ce = np.load(scores)
        assert ce.shape == (100,) and np.isfinite(ce).all() and len(set(ce.round(6))) > 1
        capsys.readouterr()
        assert main(["--data", str(data), "--cross-encoder", str(scores)]) == 0
    rows = {r[0]: r for r in table(capsys.readouterr().out)}
    assert list(rows) == ["cosine alone", "shipped guard (features + rules)",
                          "guard + MiniLM pair vectors (u*v, abs(u-v))",
                          "MiniLM cross-encoder fine-tuned on the pairs", "cross-encoder, guard's candidates"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows.values())
    # Every near miss here is one the guard must reject, so its hits at 20 % recall are all right.
    assert rows["shipped guard (features + rules)"][2] == "1.000 (0)"


def test_the_default_router_study_runs_in_smoke_mode(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # In this process, as `python -m bench.studies.default_router --smoke` runs it (no second interpreter start-up).
    from bench.studies.default_router import main

    monkeypatch.setattr(sys, "argv", ["default_router", "--data", str(ROOT / "data"), "--smoke"])
    main()
    per_source, per_kind, mix = (table(part) for part in capsys.readouterr().out.split("\n\n")[0::2][:3])
    assert [r[0] for r in per_source] == ["alpaca/vicuna", "bench/human_eval", "mmlu/other"]
    assert all(0.0 < float(cell) < 1.0 for r in per_source for cell in r[2:6])
    assert {r[0] for r in per_kind} == {"chat, leave-source-out", "multiple choice, leave-source-out",
                                        "code, leave-source-out"}
    assert all(sum(float(c.rstrip("%")) for c in r[2:5]) == pytest.approx(100, abs=2) for r in mix)


def test_the_difficulty_studies_run_on_the_shared_data(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # The ones that take seconds (difficulty_nested takes minutes): every source gets its row. In this process,
    # as `python -m bench.studies.NAME --data data --smoke` runs each (at most 200 prompts of each source), with the
    # data's design computed once for the three (the same call each would make, and as many seconds of start-up).
    from bench.studies import outcome_design

    monkeypatch.setattr(sys, "argv", ["study", "--data", str(ROOT / "data"), "--smoke"])
    made: list[tuple[list[Any], np.ndarray]] = []

    def once(description: str, args: Any = None) -> tuple[list[Any], np.ndarray]:
        if not made:
            made.append(outcome_design.rows_and_design(description, args))
        rows, x = made[0]
        return list(rows), x.copy()

    for study, rows_expected in (("difficulty_per_source", 3 * 3), ("difficulty_feedback", 22),
                                 ("difficulty_alternatives", 1 + 3 * 3 + 3 * 2)):
        module = importlib.import_module(f"bench.studies.{study}")
        monkeypatch.setattr(module, "rows_and_design", once)
        module.main()
        out = capsys.readouterr().out
        rows = table(out)
        assert len(rows) == rows_expected, out
        assert all(0.0 < float(cell) < 1.0 for r in rows for cell in r[2:5] if cell.replace(".", "").isdigit())
    assert len(made) == 1
