"""The runs/ folder: runs/<model>/<name>/{weights/, config.json, train.log, ...}."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from edgeano.data.preprocess import CONTRASTS
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_json


def new_run_dir(out, model: str, name: Optional[str] = None, exist_ok: bool = False) -> Path:
    """runs/<model>/<name>; without a name, exp, exp2, exp3... (the first free one)."""
    base = Path(out) / model
    if name:
        d = base / name
        if d.exists() and not exist_ok and any(d.iterdir()):
            raise FileExistsError(d)
    else:
        i = 1
        while True:
            d = base / ("exp" if i == 1 else f"exp{i}")
            if not d.exists():
                break
            i += 1
    (d / "weights").mkdir(parents=True, exist_ok=True)
    return d


def save_config(run_dir: Path, config: dict) -> Path:
    return write_json(Path(run_dir) / "config.json", config)


def run_logger(run_dir: Path, name: str = "edgeano.train") -> logging.Logger:
    """A logger that writes train.log in the run folder (the console gets progress bars instead)."""
    log = logging.getLogger(f"{name}.{Path(run_dir).resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        h = logging.FileHandler(Path(run_dir) / "train.log")
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(h)
    return log


def contrast_option(contrast: Optional[str]) -> str:
    """--contrast as both trainers take it: None means "none"; anything else not in CONTRASTS is
    refused in one line before any run folder exists."""
    if contrast is None:
        return "none"
    if contrast not in CONTRASTS:
        raise EdgeanoError(f"--contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")
    return contrast
