"""The runs/ folder: runs/<model>/<name>/{weights/, config.json, train.log, metrics.csv}."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgeano.data.preprocess import CONTRASTS
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.fileio import not_written, write_json, write_text


LEFTOVER = {"weights", "train.log", "config.json", "metrics.csv"}  # what a run holds before its first checkpoint
_created: List[Path] = []  # run folders this process made, for discard_unsaved
_made_parents: Dict[Path, List[Path]] = {}  # run folder -> the runs/ and runs/<model>/ folders made with it


def new_run_dir(out, model: str, name: Optional[str] = None, exist_ok: bool = False) -> Path:
    """runs/<model>/<name>; without a name, exp, exp2, exp3... (the first free one). A named
    folder that a failed run left without any checkpoint is reused, never a trap."""
    base = Path(out) / model
    if name:
        d = base / name
        if d.exists() and not exist_ok and any(d.iterdir()):
            if not is_unsaved(d):
                raise FileExistsError(d)
            close_run_logger(d)
            shutil.rmtree(d)
    else:
        i = 1
        while True:
            d = base / ("exp" if i == 1 else f"exp{i}")
            if not d.exists():
                break
            i += 1
    if not d.exists():
        _created.append(d)
        _made_parents[d] = [p for p in (base, Path(out)) if not p.exists()]
    (d / "weights").mkdir(parents=True, exist_ok=True)
    return d


def is_unsaved(run_dir: Path) -> bool:
    """A run folder holding only what a run writes before its first checkpoint (and perhaps the
    temp file of a save that was killed)."""
    run_dir = Path(run_dir)
    if not {p.name for p in run_dir.iterdir()} <= LEFTOVER:
        return False
    weights = run_dir / "weights"
    return not weights.exists() or (weights.is_dir() and all(p.name.startswith(".") and p.name.endswith(".tmp")
                                                             for p in weights.iterdir()))


def created_mark() -> int:
    return len(_created)


def discard_unsaved(mark: int) -> None:
    """Remove the run folders made since `mark` that never saved a checkpoint (a training that
    failed: bad data, full disk, Ctrl-C before the first epoch ended)."""
    for d in _created[mark:]:
        if d.is_dir() and is_unsaved(d):
            close_run_logger(d)
            shutil.rmtree(d, ignore_errors=True)
            for parent in _made_parents.get(d, []):  # runs/<model>/, then runs/, when this run made them
                try:
                    parent.rmdir()  # only if empty: another run's folder is never touched
                except OSError:
                    break
        _made_parents.pop(d, None)
    del _created[mark:]


def close_run_logger(run_dir: Path, name: str = "edgeano.train") -> None:
    log = logging.getLogger(f"{name}.{Path(run_dir).resolve()}")
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def save_config(run_dir: Path, config: dict) -> Path:
    return write_json(Path(run_dir) / "config.json", config)


def run_logger(run_dir: Path, name: str = "edgeano.train") -> logging.Logger:
    """A logger that writes train.log in the run folder (the console gets progress bars instead)."""
    log = logging.getLogger(f"{name}.{Path(run_dir).resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        path = Path(run_dir) / "train.log"
        try:
            h = _LogFile(path, encoding="utf-8", errors="backslashreplace")  # a non-UTF-8 file name is logged, escaped
        except OSError as e:
            raise not_written(path, e) from None
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(h)
    return log


class _LogFile(logging.FileHandler):
    """train.log: a line that cannot be written (disk full) is dropped, not printed as a logging
    traceback per line; the checkpoint save that follows reports the full disk in one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def contrast_option(contrast: Optional[str]) -> str:
    """--contrast as both trainers take it: None means "none"; anything else not in CONTRASTS is
    refused in one line before any run folder exists."""
    if contrast is None:
        return "none"
    if contrast not in CONTRASTS:
        raise EdgeanoError(f"--contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}", EXIT_USAGE)
    return contrast


def resume_dir(out, model: str, name: Optional[str]) -> Path:
    """The run --resume continues: runs/<model>/<name>, or the newest with weights/last.pt."""
    base = Path(out) / model
    if name:
        d = base / name
    else:
        found = sorted(base.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise EdgeanoError(f"--resume: no {model} run with weights/last.pt under {base}")
        d = found[-1].parent.parent
    if not (d / "weights" / "last.pt").is_file():
        raise EdgeanoError(f"--resume: {d / 'weights' / 'last.pt'} not found; train without --resume first")
    return d


def write_metrics(path: Path, rows: List[Dict], first: Sequence[str] = ("epoch", "phase")) -> None:
    """metrics.csv: one row per epoch; columns in order of first appearance (models log different losses)."""
    cols: List[str] = list(first)
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    lines = [",".join(cols)] + [",".join(fmt(r.get(c)) for c in cols) for r in rows]
    write_text(path, "\n".join(lines) + "\n")
