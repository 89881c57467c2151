"""What the difficulty studies start from: the shared outcome rows (`--data`, default: the repository's data/) and
their design matrix, exactly as `smr eval --leave-source-out` builds it. `--smoke` (the test suite's run): at most
SMOKE_PER_SOURCE prompts of each source, a fixed draw, so the studies' code runs end to end in a fraction of the time
(their numbers are then not the study's)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from router_lab.difficulty import design, prompt_inputs
from router_lab.outcomes import DATA, Outcomes, load_all

SMOKE_PER_SOURCE = 200


def parser(description: str) -> argparse.ArgumentParser:
    """The studies' command line: `--data`, `--smoke`; a study adds its own flags."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", default=str(DATA), help="a data folder (default: the repository's data/)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"the test suite's quick run: at most {SMOKE_PER_SOURCE} prompts of each source (a study may "
                         "narrow it further)")
    return ap


def smoke_sample(rows: Sequence[Outcomes], per_source: int = SMOKE_PER_SOURCE) -> list[Outcomes]:
    """At most `per_source` rows of each source (a fixed draw), in their original order."""
    sources = np.array([r.source for r in rows])
    rng = np.random.default_rng(0)
    keep = [i for s in sorted(set(sources.tolist())) for i in
            rng.permutation(np.flatnonzero(sources == s))[:per_source].tolist()]
    return [rows[i] for i in sorted(keep)]


def rows_and_design(description: str, args: argparse.Namespace | None = None) -> tuple[list[Outcomes], np.ndarray]:
    args = args or parser(description).parse_args()
    rows = load_all(Path(args.data))
    if args.smoke:
        rows = smoke_sample(rows)
    vectors, extra = prompt_inputs([r.prompt for r in rows])
    x, _ = design(extra, vectors)
    return rows, x
