"""Learning from one's own traffic (issue 14): `smr calibrate --from-logs` reaches its target strong-tier
share on the held-out half of a log, or stays within a dollar budget; `smr train --from-logs` prints the
held-out change of a head refitted on rated requests, and writes only when asked.

The log is real prompts (the repository's data/) written into the request log as the gateway writes them."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from router_lab.outcomes import DATA, read_text
from tests.helpers import smr_in_process

SHARED = DATA / "router_outcomes"


def prompts(name: str, limit: int | None = None, source: str | None = None) -> list[str]:
    rows = [json.loads(line) for line in read_text(SHARED / name).split("\n") if line]
    return [r["prompt"] for r in rows if source is None or r["source"] == source][:limit]


def write_log(pg_url: str, tenant: str, items: list[tuple[str, str, int]], fixed_ids: bool = False) -> list[str]:
    """Rows as the gateway logs them with log.prompts on: (prompt, tier, rating or 0 for none). With
    `fixed_ids` the request ids (which split the log in halves) are the same at every run."""
    import asyncio

    from gateway.db.migrate import migrate, migrations_dir

    asyncio.run(migrate(pg_url, migrations_dir(None)))
    ids = [f"req_fixed_{i:08d}" if fixed_ids else "req_" + secrets.token_hex(12) for i in range(len(items))]
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(pg_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO request_log (request_id, ts, endpoint, cache_status, latency_ms, http_status, tenant, "
            "requested_model, tier, prompt, prompt_tokens, completion_tokens) "
            "VALUES (%s, %s, '/v1/chat/completions', 'miss', 10, 200, %s, 'auto', %s, %s, %s, 300)",
            [(i, now, tenant, tier, f"user: {p}", max(1, len(p) // 4)) for i, (p, tier, _) in zip(ids, items,
                                                                                                strict=True)])
        conn.cursor().executemany(
            "INSERT INTO feedback (request_id, tenant, rating) VALUES (%s, %s, %s)",
            [(i, tenant, r) for i, (_, _, r) in zip(ids, items, strict=True) if r])
    return ids


def smr(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return smr_in_process(args, {"DATABASE_URL": pg_url, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def log_tenant(pg_url: str) -> str:
    from router_lab.outcomes import load_all

    tenant = "calib-" + secrets.token_hex(3)
    texts = [r.prompt for r in load_all(SHARED.parent)]  # 15,499 prompts of five kinds of traffic
    write_log(pg_url, tenant, [(p, "medium", 0) for p in texts], fixed_ids=True)
    return tenant


@pytest.mark.parametrize("share", [0.2, 0.35])
def test_calibration_hits_its_strong_share_on_the_held_out_half(pg_url: str, log_tenant: str, share: float,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "smr.toml"
    config.write_text("[routing]\ncutoffs = [0.35, 0.62]\n")
    out = smr(pg_url, "calibrate", "--config", str(config), "--from-logs", "--tenant", log_tenant,
              "--strong-share", str(share), "--json", "--write", str(config))
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["prompts"] > 15000 and abs(result["held_out"] - result["fitted"]) < 0.1 * result["prompts"]
    assert abs(result["held_out_shares"][2] - share) <= 0.02, result  # within 2 points on unseen traffic
    assert "held-out half" in out.stdout
    lo, hi = result["cutoffs"]
    assert f"cutoffs = [{lo}, {hi}]" in config.read_text()


def test_calibration_to_a_dollar_budget(pg_url: str, log_tenant: str) -> None:
    # The default tiers: complex (gemini-2.5-pro) costs the most; a budget between all-medium and
    # all-complex gets a strong share in between, and its estimate stays within the budget.
    out = smr(pg_url, "calibrate", "--from-logs", "--tenant", log_tenant, "--budget-usd", "20.0", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    spent = float(out.stdout.split("estimated cost of the window $")[1].split()[0])
    assert 0 < result["held_out_shares"][2] < 1 and spent <= 20.0 * 1.1
    # A budget below what the window costs with nothing on the complex tier is refused: shown on a small
    # log (scoring the whole one again adds nothing; the window's cost is what is compared).
    small = "calib-small-" + secrets.token_hex(3)
    write_log(pg_url, small, [(p, "medium", 0) for p in prompts("llmrouter_dcrouter_per_prompt.jsonl", 60)])
    tight = smr(pg_url, "calibrate", "--from-logs", "--tenant", small, "--budget-usd", "0.0001")
    assert tight.returncode == 1 and "costs more than" in tight.stderr


def test_calibration_needs_a_log_with_prompts(pg_url: str) -> None:
    out = smr(pg_url, "calibrate", "--from-logs", "--tenant", "nobody-" + secrets.token_hex(3), "--strong-share",
              "0.2")
    assert out.returncode == 2 and "log.prompts" in out.stderr


@pytest.mark.parametrize("classifier", ["tiered", "embedding"])
def test_training_on_ratings_prints_the_held_out_change_before_writing(pg_url: str, tmp_path: Path,
                                                                       classifier: str) -> None:
    # Without --classifier it refits the configured pipeline's first learned classifier: the default
    # `tiered`, whose ranking is the difficulty head, so ratings reach the classifier that routes.
    tenant = "train-" + secrets.token_hex(3)
    # The cheap tier failed these (rated bad) and handled those (rated good).
    hard = prompts("llmrouter_dcrouter_per_prompt.jsonl", 140, "llmrouter/math")
    easy = prompts("llmrouter_dcrouter_per_prompt.jsonl", 140, "llmrouter/commonsense_qa")
    write_log(pg_url, tenant, [(p, "simple", -1) for p in hard[:120]] + [(p, "simple", 1) for p in easy[:120]])
    head = tmp_path / "head.json"
    which = [] if classifier == "tiered" else ["--classifier", classifier]
    setting = {"tiered": "difficulty_head", "embedding": "embedding_head"}[classifier]
    if classifier == "tiered":  # without --write it prints and writes nothing (the same code for every head;
        # the MiniLM head's case skips this second fit: MiniLM encoding the ratings is most of its time)
        dry = smr(pg_url, "train", "--from-logs", "--tenant", tenant, *which)
        assert dry.returncode == 0, dry.stderr
        assert f"{classifier} head" in dry.stdout and "nothing written" in dry.stdout and not head.exists()
    wrote = smr(pg_url, "train", "--from-logs", "--tenant", tenant, *which, "--write", str(head))
    assert wrote.returncode == 0 and head.exists() and f"routing.{setting}" in wrote.stdout, wrote.stderr
    print(wrote.stdout)
    assert f"{classifier} head" in wrote.stdout
    before, after = (float(x) for x in wrote.stdout.split("held-out AUC")[1].split(":")[1].split()[0:3:2])
    assert after > before  # the ratings taught it something it did not know
    # The written head carries its own figures (what the refit did on the held-out ratings), not the
    # cross-validated ones of the packaged head it started from, which no longer describe it.
    assert json.loads(head.read_text())["cv"] == {"ratings": 240, "held_out_auc_before": round(before, 3),
                                                  "held_out_auc_refitted": round(after, 3)}
    if classifier == "embedding":
        from router_core.classifiers.embedding import load_head

        assert load_head(head).trained_on[-1] == "feedback:240"
        return
    from router_core.difficulty import load_head as load_difficulty_head

    assert load_difficulty_head(head).trained_on[-1] == "feedback:240"
    # The written head, set in the configuration, is the one that scores: on prompts it was not refitted
    # on, it now sets the kind that was rated bad further apart from the kind rated good.
    src = tmp_path / "unseen.jsonl"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in hard[120:] + easy[120:]))
    # (Scored by the `difficulty` classifier, which reads the head alone: `tiered` ranks maths problems by
    # their length, which ratings do not move.)
    packaged, config = tmp_path / "packaged.toml", tmp_path / "refitted.toml"
    packaged.write_text('[routing]\nclassifiers = ["difficulty", "heuristic"]\n')
    config.write_text(f'[routing]\nclassifiers = ["difficulty", "heuristic"]\ndifficulty_head = "{head}"\n')
    gaps = []
    for cfg in (str(packaged), str(config)):
        out = smr(pg_url, "classify", "--config", cfg, "--input", str(src))
        assert out.returncode == 0, out.stderr
        scored = [json.loads(line) for line in out.stdout.splitlines()]
        assert {r["classifier"] for r in scored} == {"difficulty"}
        scores = [r["score"] for r in scored]
        gaps.append(sum(scores[:20]) / 20 - sum(scores[20:]) / 20)
    assert gaps[1] > gaps[0]
    # A configured head the classifier cannot read is named, not a traceback.
    from router_core.difficulty import HEAD_PATHS

    config.write_text(f'[routing]\ndifficulty_embedding = "static"\ndifficulty_head = "{HEAD_PATHS["minilm"]}"\n')
    wrong = smr(pg_url, "train", "--from-logs", "--tenant", tenant, "--config", str(config))
    assert wrong.returncode == 2 and "routing.difficulty_head" in wrong.stderr and "Traceback" not in wrong.stderr
    few = smr(pg_url, "train", "--from-logs", "--tenant", "nobody-" + secrets.token_hex(3))
    assert few.returncode == 2 and "need at least 20" in few.stderr
