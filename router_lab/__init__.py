"""Research apart from serving: what trains, fits and evaluates the router, never loaded by the gateway.

    outcomes, data          the outcome data in data/ and the cheap/strong prompt sets, as Structs
    irt                     Rasch difficulty (an item-response fit of every model on every prompt)
    difficulty, held_out    the difficulty head's targets and fit; leave-source-out evaluation
    train                   the embedding classifier's head (scikit-learn)
    feedback, calibrate     refitting a head on ratings; cut-offs for tier shares, a budget, a strong share
    evals/                  APGR, CPT, cost-quality curves and their PNG

`router_core` is what the gateway runs (heads, features, classifiers); this package builds on it and is
used by `smr train`, `smr eval`, `smr calibrate` (imported inside those commands) and bench/studies.
Its libraries beyond serving's are the `train` extra: pip install -e '.[train]'.
"""

from __future__ import annotations

import importlib

# Import names of what only training needs (pyproject.toml's [project.optional-dependencies] train).
TRAIN_EXTRA = {"sklearn": "scikit-learn", "scipy": "scipy"}
INSTALL_HINT = "pip install -e '.[train]'"


def missing_extra() -> list[str]:
    """The distributions of the train extra that cannot be imported here (empty when it is installed)."""
    missing = []
    for module, dist in TRAIN_EXTRA.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    return missing
