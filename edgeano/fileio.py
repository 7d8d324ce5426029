"""Atomic file writes: write a temp file beside the target, then rename, so a crash never
leaves a half-written artifact, report or engine. A write that fails (disk full, read-only,
permission) is one EdgeanoError naming the target, never the temp file (exit 4); the
check_output_* functions find an unwritable output before the work that would fill it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from edgeano.errors import EXIT_OUTPUT, EXIT_USAGE, EdgeanoError

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it onto `path`, else delete it.
    `suffix`: the temp file's ending (".tmp.onnx" for a file a loader must recognise while checked)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise not_written(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the result the mode a plain open() would (0666 less umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as e:  # the body writes the temp file: ENOSPC, EFBIG, EROFS... are about `path`
        raise not_written(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def not_written(path: PathLike, e: OSError) -> EdgeanoError:
    """"cannot write PATH: no space left on device" (exit 4), naming the target, not a temp file."""
    why = (e.strerror or str(e) or type(e).__name__).lower()
    return EdgeanoError(f"cannot write {path}: {why}", EXIT_OUTPUT)


def check_output_file(path: PathLike, flag: str, suffixes: Optional[Sequence[str]] = None) -> Path:
    """Before the work: `path` names a file (not a folder, one of `suffixes`) in a place this
    process can write. A wrong form is a usage error (2); an unwritable place is exit 4."""
    path = Path(path)
    if path.is_dir():
        raise EdgeanoError(f"{flag} {path} is a folder; give a file name" + (f" ending in {suffixes[0]}" if suffixes else ""), EXIT_USAGE)
    if suffixes and path.suffix.lower() not in suffixes:
        raise EdgeanoError(f"{flag} must end in {' or '.join(suffixes)}, got {path}", EXIT_USAGE)
    _check_writable(path.parent, flag, path)
    return path


def check_output_dir(path: PathLike, flag: str) -> Path:
    """Before the work: `path` is a folder (or can be made) that this process can write in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeanoError(f"{flag} {path} is a file; give a folder", EXIT_USAGE)
    _check_writable(path, flag, path)
    return path


def _check_writable(folder: Path, flag: str, target: Path) -> None:
    """Probe the nearest existing folder on the way to `folder` with a temp file (root ignores
    permission bits, a read-only mount does not: only trying tells)."""
    near = folder
    while not near.exists() and near != near.parent:
        near = near.parent
    if not near.is_dir():
        raise EdgeanoError(f"cannot write {flag} {target}: {near} is a file, not a folder", EXIT_OUTPUT)
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeano-probe-", dir=near)
    except OSError as e:
        raise EdgeanoError(f"cannot write {flag} {target}: {(e.strerror or str(e)).lower()} ({near})", EXIT_OUTPUT) from None
    os.close(fd)
    os.unlink(probe)


def write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
