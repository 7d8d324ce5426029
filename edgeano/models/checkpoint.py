"""Checkpoints: config, preprocessing, state dicts and plain numbers only, loadable with
`torch.load(weights_only=True)`; never pickled modules.

    {"format": "edgeano-checkpoint", "version": 1, "model": "gaussian", "config": {...},
     "preprocess": {...}, "state_dict": {...}, "meta": {"threshold": {...}, "score_stats": {...},
     "train_fingerprint": "sha256:...", ...}, "train_state": {... optional: optimizers, epoch, rng}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from edgeano import __version__
from edgeano.artifact import make_metadata
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.fileio import atomic_path
from edgeano.models.common import AnomalyModel, load_torch_file
from edgeano.models.registry import create

FORMAT = "edgeano-checkpoint"
VERSION = 1


def save_checkpoint(path, model: AnomalyModel, meta: Dict[str, Any], train_state: Optional[Dict[str, Any]] = None) -> Path:
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.name,
        "config": model.config(),
        "preprocess": model.preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta, edgeano=__version__),
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def read_checkpoint(path) -> Dict[str, Any]:
    """torch.load(weights_only=True) with one-line errors for missing/corrupt/foreign files."""
    path = Path(path)
    ckpt = load_torch_file(path, "edgeano checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgeanoError(f"{path} is not an edgeano checkpoint (train one with `edgeano train`)")
    if ckpt.get("version", 0) > VERSION:
        raise EdgeanoError(f"{path}: checkpoint version {ckpt['version']} is newer than this edgeano; upgrade edgeano")
    return ckpt


def load_checkpoint(path, device: str = "cpu") -> Tuple[AnomalyModel, Dict[str, Any]]:
    ckpt = read_checkpoint(path)
    model = create(ckpt["model"], Preprocess.from_dict(ckpt["preprocess"]), **ckpt["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise EdgeanoError(f"{path}: weights do not fit model {ckpt['model']!r}: {str(e).splitlines()[0][:200]}")
    return model.to(device).eval(), ckpt


def checkpoint_metadata(model: AnomalyModel, ckpt: Dict[str, Any], **extra) -> Dict[str, Any]:
    """The artifact metadata for a checkpoint: what `export` writes and the torch runner reports."""
    m = dict(ckpt.get("meta", {}))
    threshold = m.pop("threshold", None) or {"value": float("inf"), "method": "none"}
    stats = m.pop("score_stats", {})
    m.pop("edgeano", None)
    m.update(model.extra_metadata())
    m.update(extra)
    return make_metadata(model.name, model.preprocess, model.output_names, threshold, stats, **m)
