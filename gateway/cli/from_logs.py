"""`smr calibrate --from-logs` and `smr train --from-logs`: tuning the router on one's own traffic.

Both read the request log of a time window (prompts are there only with log.prompts = true) and split
it into two fixed halves by request id: they fit on one half and report on the other, so what they print
is what to expect on traffic they have not seen. Nothing is written without --write. The fitting code
(`router_lab.calibrate`, `router_lab.feedback`) is imported inside each command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from gateway.cli.admin import with_pool
from gateway.cli.scoring import WRITE_DEFAULT, embedder, score_all, write_cutoffs
from gateway.db.feedback import FeedbackStore, LoggedPrompt, RatedRequest
from gateway.db.usage import parse_time
from gateway.vocab.errors import GatewayError
from gateway.vocab.prompt_log import conversation_of
from gateway.vocab.settings import AuthSettings, Settings, read_settings, validate
from router_core.types import TIERS


def offline_settings(config: str | None) -> Settings:
    """The settings with the environment (DATABASE_URL ...); no admin key needed to read the log."""
    return validate(msgspec.structs.replace(read_settings(config), auth=AuthSettings(enabled=False)))


def _window(args: argparse.Namespace) -> tuple[Any, Any]:
    try:
        return parse_time(args.since, "since"), parse_time(args.until, "until")
    except GatewayError as exc:
        raise SystemExit(f"smr: {exc.message}") from None


def _read(settings: Settings, args: argparse.Namespace, rated: bool) -> list[Any]:
    since, until = _window(args)

    async def fetch(pool: Any) -> list[Any]:
        store = FeedbackStore(pool)
        return await (store.rated if rated else store.prompts)(since, until, args.tenant)

    return asyncio.run(with_pool(settings, fetch))


def _shares(label: str, s: tuple[float, float, float]) -> str:
    return f"{label}: simple {s[0]:.1%}  medium {s[1]:.1%}  complex {s[2]:.1%}"


def tier_costs(rows: list[LoggedPrompt], settings: Settings) -> np.ndarray:
    """What each logged request's tokens cost on each tier's first backend."""
    out = np.zeros((len(rows), len(TIERS)))
    for t, tier in enumerate(TIERS):
        b = settings.backend(settings.tiers.chain(tier)[0])
        assert b is not None
        out[:, t] = [(r.prompt_tokens * b.input_price + r.completion_tokens * b.output_price) / 1e6 for r in rows]
    return out


def calibrate_from_logs(args: argparse.Namespace) -> int:
    from router_lab.calibrate import cutoffs_for_budget, cutoffs_for_strong_share, held_out, tier_shares

    settings = offline_settings(args.config)
    if (args.strong_share is None) == (args.budget_usd is None):
        print("smr calibrate --from-logs needs one target: --strong-share S or --budget-usd X", file=sys.stderr)
        return 2
    rows: list[LoggedPrompt] = _read(settings, args, rated=False)
    if len(rows) < 20:
        print(f"only {len(rows)} logged prompts in this window: calibrating needs log.prompts = true and traffic",
              file=sys.stderr)
        return 2
    name = args.classifier or settings.routing.classifiers[0]
    scores = np.array(score_all(name, [conversation_of(r.prompt) for r in rows], settings))
    test = held_out([r.request_id for r in rows])
    fit = ~test
    current = settings.routing.cutoffs
    if args.strong_share is not None:
        cut = cutoffs_for_strong_share(scores[fit], args.strong_share, current)
        target = f"target complex {args.strong_share:.1%}"
    else:
        costs = tier_costs(rows, settings)
        # The budget is for the whole window; each half is about half of it.
        found = cutoffs_for_budget(scores[fit], costs[fit], args.budget_usd * fit.sum() / len(rows), current)
        if found is None:
            print(f"even with no request on the complex tier this window costs more than ${args.budget_usd}",
                  file=sys.stderr)
            return 1
        cut = found
        tier = (scores >= cut[0]).astype(int) + (scores >= cut[1]).astype(int)
        spent = costs[np.arange(len(rows)), tier]
        target = (f"budget ${args.budget_usd:.4f}; estimated cost of the window ${spent.sum():.4f} "
                  f"(held-out half ${spent[test].sum():.4f} x {len(rows) / max(1, test.sum()):.2f})")
    result = {"prompts": len(rows), "fitted": int(fit.sum()), "held_out": int(test.sum()), "classifier": name,
              "cutoffs": list(cut), "fitted_shares": tier_shares(scores[fit], cut),
              "held_out_shares": tier_shares(scores[test], cut)}
    print(f"{len(rows)} logged prompts scored with {name}: fitted on {fit.sum()}, held out {test.sum()}")
    print(f"cutoffs = [{cut[0]}, {cut[1]}]  ({target})")
    print(_shares("fitted half  ", result["fitted_shares"]))  # type: ignore[arg-type]
    print(_shares("held-out half", result["held_out_shares"]))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(result))
    if args.write:
        write_cutoffs(Path(args.write), cut)
    return 0


def trainable_head(settings: Settings, args: argparse.Namespace, command: str) -> str | None:
    """The classifier whose head to refit: `--classifier`, else the first trainable one configured."""
    name = args.classifier or next((n for n in settings.routing.classifiers if n in _SETTING), None)
    if name not in _SETTING:
        print(f"{command} refits the head of {' or '.join(_SETTING)}; "
              f"{'--classifier is ' + repr(name) if name else 'routing.classifiers has neither'}", file=sys.stderr)
        return None
    return name


def refit_and_report(settings: Settings, args: argparse.Namespace, name: str, prompts: list[str],
                     ys: np.ndarray, test: np.ndarray, what: str, positive: str) -> int:
    """Refit `name`'s head on labelled prompts (1: a stronger model was needed) as a correction to the head it
    uses now, fitted on one half and reported on the other (held-out AUC before and after); with --write,
    write the head refitted on every label. Shared by `smr train --from-logs` (ratings) and
    `--from-judgements`."""
    from router_core.classifiers.embedding import Head
    from router_core.difficulty import difficulty_logits
    from router_lab.feedback import auc, refit, refit_difficulty

    heads: dict[str, tuple[Callable[..., Any], ...]] = {   # design rows, logits, refit
        "tiered": (_tiered_design, difficulty_logits, refit_difficulty),   # its ranking is the difficulty head's
        "difficulty": (_difficulty_design, difficulty_logits, refit_difficulty),
        "embedding": (_embedding_design, Head.logits, refit)}
    design, logits, refit_head = heads[name]
    try:
        head, x = design(settings, [conversation_of(p) for p in prompts])
    except (OSError, ValueError) as exc:  # the configured head: missing, unreadable or for the other embedding
        print(f"smr: routing.{_SETTING[name]}: {exc}", file=sys.stderr)
        return 2
    fitted = refit_head(head, x[~test], ys[~test], args.l2)
    before, after = auc(logits(head, x)[test], ys[test]), auc(logits(fitted, x)[test], ys[test])
    print(f"{len(ys)} {what} ({int(ys.sum())} {positive}), {name} head: fitted on "
          f"{int((~test).sum())}, held out {int(test.sum())}")
    print(f"held-out AUC (ranks the requests that needed a stronger model first): {before:.3f} now, "
          f"{after:.3f} refitted ({after - before:+.3f})")
    if not args.write or args.write == WRITE_DEFAULT:
        print("nothing written (add --write PATH to write the refitted head)")
        return 0
    out = Path(args.write)
    # Refitted on every label; its figures are the held-out ones above (the packaged head's cross-validated
    # figures describe the packaged head, not this one).
    figures = {"judgements" if what == "judgements" else "ratings": len(ys), "held_out_auc_before": round(before, 3),
               "held_out_auc_refitted": round(after, 3)}
    final = msgspec.structs.replace(refit_head(head, x, ys, args.l2), cv=figures)
    out.write_text(json.dumps(msgspec.to_builtins(final)) + "\n")
    print(f"wrote {out}; use it with routing.{_SETTING[name]} = \"{out}\"")
    return 0


_SETTING = {"tiered": "difficulty_head", "difficulty": "difficulty_head", "embedding": "embedding_head"}


def train_from_logs(args: argparse.Namespace) -> int:
    """Refit the head of `--classifier` (default: the first trainable one of routing.classifiers) on rated
    requests, as a correction to the head it uses now; print the held-out AUC before and after."""
    from router_lab.calibrate import held_out
    from router_lab.feedback import label

    settings = offline_settings(args.config)
    name = trainable_head(settings, args, "smr train --from-logs")
    if name is None:
        return 2
    rows: list[RatedRequest] = _read(settings, args, rated=True)
    labelled = [(r, y) for r in rows if (y := label(r.tier, r.rating)) is not None]
    ys = np.array([y for _, y in labelled])
    test = held_out([r.request_id for r, _ in labelled])
    if len(labelled) < 20 or len(set(ys[~test])) < 2 or len(set(ys[test])) < 2:
        print(f"{len(rows)} rated requests with logged prompts, {len(labelled)} usable as labels: need at least 20, "
              "with good and bad ratings in both halves (POST /v1/feedback, log.prompts = true)", file=sys.stderr)
        return 2
    return refit_and_report(settings, args, name, [r.prompt for r, _ in labelled], ys, test, "rated requests",
                            "needed a stronger model")


def _difficulty_design(settings: Settings, convs: list[Any]) -> tuple[Any, np.ndarray]:
    """The difficulty classifier as the gateway builds it (its head file, the embedding it reads), its head
    and its design rows."""
    from gateway.app import difficulty_reads
    from router_core.registry import build_classifier

    kind = difficulty_reads(settings)
    options = {"difficulty_embedding": kind, "difficulty_head": settings.routing.difficulty_head,
               "embedder": embedder() if kind == "minilm" else None}
    clf: Any = build_classifier("difficulty", options)
    return clf.head, clf.design(convs)


def _tiered_design(settings: Settings, convs: list[Any]) -> tuple[Any, np.ndarray]:
    """The `tiered` classifier's ranking head (the difficulty head on the static embedding), its design rows."""
    from router_core.registry import build_classifier

    clf: Any = build_classifier("tiered", {"difficulty_head": settings.routing.difficulty_head,
                                           "cutoffs": settings.routing.cutoffs})
    return clf.ranker.head, clf.ranker.design(convs)


def _embedding_design(settings: Settings, convs: list[Any]) -> tuple[Any, np.ndarray]:
    from router_core.classifiers.embedding import HEAD_PATH, classifier_text, load_head

    head = load_head(Path(settings.routing.embedding_head) if settings.routing.embedding_head else HEAD_PATH)
    texts = [classifier_text(c) for c in convs]
    vectors = embedder().encode_batch(texts)
    return head, np.array([head.design(v, t) for v, t in zip(vectors, texts, strict=True)])
