"""Training entry points, one module per model family: `run_training(model, **cli_options)`.

Every option that needs no data is checked here, before a trainer reads an image or makes a
run folder; a run folder made by a training that then fails before its first checkpoint is
removed (runs.discard_unsaved), so neither a bad flag nor a full disk leaves one behind."""

from __future__ import annotations

import importlib
import math

from edgeano.errors import EdgeanoError
from edgeano.train import runs

# every learned model but the Gaussian one trains in edgeano.train.loop (its RECIPES table)
LOOP_MODELS = ("ganomaly", "skip-ganomaly", "anogan", "egbad", "ae", "vae", "rvae", "oe-sdn")
TRAINERS = {"gaussian": "edgeano.train.gaussian", **{m: "edgeano.train.loop" for m in LOOP_MODELS}}
WHOLE_POSITIVE = ("img_size", "epochs", "batch", "nz", "width")  # None = the trainer's default; 0 is not (--blocks 0 is: loop.py checks it)


def run_training(model: str, **opts):
    if model not in TRAINERS:
        raise EdgeanoError(f"no trainer for model {model!r}; choose from {', '.join(TRAINERS)}")
    try:
        mod = importlib.import_module(TRAINERS[model])
    except ModuleNotFoundError as e:
        if e.name == "torch":
            raise EdgeanoError("training needs torch: pip install 'edgeano[train]'")
        raise
    check_options(opts)
    mark = runs.created_mark()
    try:
        return mod.train(model=model, **opts)
    except BaseException:
        runs.discard_unsaved(mark)
        raise


def check_options(opts) -> None:
    """Numbers in range (0 never silently becomes the default, NaN is no learning rate) and a
    device torch knows and has."""
    for key in WHOLE_POSITIVE:
        v = opts.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise EdgeanoError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {v!r}")
    lr = opts.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0):
        raise EdgeanoError(f"--lr must be a finite number > 0, got {lr!r}")
    check_device(opts.get("device") or "cpu")


def check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EdgeanoError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise EdgeanoError(f"--device {device}: edgeano trains on cpu or cuda")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise EdgeanoError(f"--device {device}: CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise EdgeanoError(f"--device {device}: this machine has CUDA devices 0..{n - 1}")
