"""Machinery of the bad-input tables (tests/test_bad_input*.py).

Each `Case` is one command a careless user or an attacker might type, run as a real `edgeano`
process from a scratch folder (so OpenCV's or libav's own stderr noise is seen too), with what
must come back: the exit code and one `error:` line matching a pattern, no traceback; and what
must not happen: files left behind (globs), a previous artifact changed (bytes compared).
A case with code 0 is a file or flag that must work (no `error:` line at all); `forbid` lists
patterns that must not appear on stderr (library noise); `max_file_bytes` runs the command under
RLIMIT_FSIZE, so writing more fails as on a full disk (EFBIG, where a full disk gives ENOSPC).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

EDGEANO = Path(sys.executable).with_name("edgeano")


@dataclass
class Case:
    id: str
    argv: Sequence[str]  # arguments after `edgeano`; "{name}" is filled from the fixtures dict
    code: int  # expected exit code (edgeano.errors)
    message: str  # regex the single `error:` line must match (re.search)
    absent: Sequence[str] = ()  # globs, relative to the scratch folder, that must not exist afterwards
    survives: Sequence[str] = ()  # files (after formatting) that must be byte-identical afterwards
    setup: Optional[Callable[[Path, Dict[str, str]], None]] = None  # prepares the scratch folder first
    alone: bool = True  # the error line is the only stderr line (the check came before any work)
    timeout: float = 120.0
    env: Dict[str, str] = field(default_factory=dict)
    forbid: Sequence[str] = ()  # regexes that must not match any stderr line
    max_file_bytes: Optional[int] = None  # RLIMIT_FSIZE for the command: a "full disk" past this many bytes per file


def _digest(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, scratch: Path, fixtures: Dict[str, str]) -> subprocess.CompletedProcess:
    """Run `case` in `scratch` and assert everything it promises; returns the finished process."""
    if case.setup:
        case.setup(scratch, fixtures)
    argv = [a.format(**fixtures) for a in case.argv]
    keep = {p: _digest(scratch / p.format(**fixtures)) for p in case.survives}
    assert all(keep.values()), f"{case.id}: a file to keep does not exist before the run: {keep}"
    env = dict(os.environ, **case.env)
    for var in ("EDGEANO_DEBUG", "OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL"):  # each command silences OpenCV itself
        env.pop(var, None)
    limit = None
    if case.max_file_bytes is not None:
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.max_file_bytes, case.max_file_bytes))
    r = subprocess.run([str(EDGEANO), *argv], cwd=scratch, capture_output=True, text=True, timeout=case.timeout, env=env,
                       preexec_fn=limit)
    where = f"{case.id}: edgeano {' '.join(argv)}\n--- stderr ---\n{r.stderr}\n--- stdout ---\n{r.stdout}"
    assert "Traceback" not in r.stderr + r.stdout, where
    assert r.returncode == case.code, f"exit {r.returncode}, expected {case.code}\n{where}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if case.code == 0:
        assert not errors, f"an error line from a command that must work\n{where}"
    else:
        assert len(errors) == 1, f"expected one error: line\n{where}"
        assert re.search(case.message, errors[0]), f"error line does not match {case.message!r}\n{where}"
        if case.alone:
            assert lines == errors, f"the error line is not alone on stderr\n{where}"
    for pattern in case.forbid:
        noise = [ln for ln in lines if re.search(pattern, ln)]
        assert not noise, f"{case.id}: stderr has {pattern!r}: {noise}\n{where}"
    for pattern in case.absent:
        left = list(scratch.glob(pattern.format(**fixtures)))
        assert not left, f"{case.id}: left behind {left}\n{where}"
    for p, before in keep.items():
        assert _digest(scratch / p.format(**fixtures)) == before, f"{case.id}: {p} was changed or destroyed\n{where}"
    return r
