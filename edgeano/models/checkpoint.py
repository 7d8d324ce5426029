"""Checkpoints: config, preprocessing, state dicts and plain numbers only, loadable with
`torch.load(weights_only=True)`; never pickled modules.

    {"format": "edgeano-checkpoint", "version": 1, "model": "gaussian", "config": {...},
     "preprocess": {...}, "state_dict": {...}, "meta": {"threshold": {...}, "score_stats": {...},
     "train_fingerprint": "sha256:...", ...}, "train_state": {... optional: optimizers, epoch, rng}}
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from edgeano import __version__
from edgeano.artifact import check_input, check_number, make_metadata
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_bytes
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
    buf = io.BytesIO()  # serialised in memory first: torch.save reports a full disk as "[enforce fail at ...]"
    torch.save(ckpt, buf)
    return write_bytes(path, buf.getbuffer())


def read_checkpoint(path) -> Dict[str, Any]:
    """torch.load(weights_only=True) with one-line errors for missing/corrupt/foreign files."""
    path = Path(path)
    ckpt = load_torch_file(path, "edgeano checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgeanoError(f"{path} is not an edgeano checkpoint (train one with `edgeano train`)")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise EdgeanoError(f"{path}: checkpoint version is {version!r}, not a number{RETRAIN}")
    if version > VERSION:
        raise EdgeanoError(f"{path}: checkpoint version {version} is newer than this edgeano; upgrade edgeano")
    return check_checkpoint(ckpt, path)


RETRAIN = "; train it again with `edgeano train`"


def check_checkpoint(ckpt: Dict[str, Any], path) -> Dict[str, Any]:
    """Every section a checkpoint needs, of the right type, before a model is built from it: a
    tampered file fails in one line naming it and the field."""
    for key, kind in (("model", str), ("config", dict), ("preprocess", dict), ("state_dict", dict), ("meta", dict)):
        if key not in ckpt:
            raise EdgeanoError(f"{path}: checkpoint has no {key}{RETRAIN}")
        if not isinstance(ckpt[key], kind):
            raise EdgeanoError(f"{path}: checkpoint {key} is a {type(ckpt[key]).__name__}, expected a {kind.__name__}{RETRAIN}")
    if not all(isinstance(k, str) and torch.is_tensor(v) for k, v in ckpt["state_dict"].items()):
        raise EdgeanoError(f"{path}: checkpoint state_dict holds something other than named tensors{RETRAIN}")
    check_input(ckpt["preprocess"], str(path), section="preprocess", what="checkpoint ", hint=RETRAIN.lstrip("; "))
    threshold = ckpt["meta"].get("threshold")
    if not isinstance(threshold, dict) or "value" not in threshold:
        raise EdgeanoError(f"{path}: checkpoint meta.threshold is {threshold!r}, expected {{\"value\": <number>, ...}}{RETRAIN}")
    check_number(threshold["value"], f"{path}: checkpoint meta.threshold.value")
    return ckpt


def load_checkpoint(path, device: str = "cpu") -> Tuple[AnomalyModel, Dict[str, Any]]:
    ckpt = read_checkpoint(path)
    pre = check_input(ckpt["preprocess"], str(path), section="preprocess", what="checkpoint ", hint=RETRAIN.lstrip("; "))
    try:
        model = create(ckpt["model"], pre, **ckpt["config"])
    except TypeError as e:  # a config key the model does not take, or one it needs missing
        raise EdgeanoError(f"{path}: checkpoint config {sorted(ckpt['config'])} does not fit model {ckpt['model']!r} "
                           f"({str(e).split(': ', 1)[-1][:120]}){RETRAIN}")
    except ValueError as e:
        raise EdgeanoError(f"{path}: checkpoint config does not fit model {ckpt['model']!r}: {str(e)[:160]}{RETRAIN}")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise EdgeanoError(f"{path}: weights do not fit model {ckpt['model']!r}: {str(e).splitlines()[0][:200]}")
    return model.to(device).eval(), ckpt


def checkpoint_metadata(model: AnomalyModel, ckpt: Dict[str, Any], **extra) -> Dict[str, Any]:
    """The artifact metadata for a checkpoint: what `export` writes and the torch runner reports."""
    m = dict(ckpt.get("meta", {}))
    threshold = m.pop("threshold", None)
    if not threshold:
        raise EdgeanoError("the checkpoint has no threshold (meta.threshold); train it with `edgeano train`")
    stats = m.pop("score_stats", {})
    m.pop("edgeano", None)
    m.update(model.extra_metadata())
    m.update(extra)
    return make_metadata(model.name, model.preprocess, model.output_names, threshold, stats, **m)
