"""Training entry points, one module per model family: `run_training(model, **cli_options)`."""

from __future__ import annotations

import importlib

from edgeano.errors import EdgeanoError

# every learned model but the Gaussian one trains in edgeano.train.loop (its RECIPES table)
LOOP_MODELS = ("ganomaly", "skip-ganomaly", "anogan", "egbad", "ae", "vae", "rvae", "oe-sdn")
TRAINERS = {"gaussian": "edgeano.train.gaussian", **{m: "edgeano.train.loop" for m in LOOP_MODELS}}


def run_training(model: str, **opts):
    if model not in TRAINERS:
        raise EdgeanoError(f"no trainer for model {model!r}; choose from {', '.join(TRAINERS)}")
    try:
        mod = importlib.import_module(TRAINERS[model])
    except ModuleNotFoundError as e:
        if e.name == "torch":
            raise EdgeanoError("training needs torch: pip install 'edgeano[train]'")
        raise
    return mod.train(model=model, **opts)
