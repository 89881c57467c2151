"""What the difficulty studies start from: the shared outcome rows (`--data`, default: the repository's data/) and
their design matrix, exactly as `smr eval --leave-source-out` builds it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from router_lab.difficulty import design, prompt_inputs
from router_lab.outcomes import DATA, Outcomes, load_all


def parser(description: str) -> argparse.ArgumentParser:
    """The studies' command line: `--data`; a study adds its own flags."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", default=str(DATA), help="a data folder (default: the repository's data/)")
    return ap


def rows_and_design(description: str, args: argparse.Namespace | None = None) -> tuple[list[Outcomes], np.ndarray]:
    args = args or parser(description).parse_args()
    rows = load_all(Path(args.data))
    vectors, extra = prompt_inputs([r.prompt for r in rows])
    x, _ = design(extra, vectors)
    return rows, x
