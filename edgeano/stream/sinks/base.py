"""What every sink shares: the interface, the loop's context, and the fail-soft guard.

A sink has `name`, `needs_overlay`, `write(scored, annotated) -> bool` (True = the user asked to
stop, e.g. `q` in the window), `close()` (must leave a complete file even after SIGTERM),
`state()` (a few words for the periodic line, the summary and /api/status) and optionally
`start(ctx)` (called once, before the first frame, with the loop's `LoopContext`).

Two kinds of failure:
- `required` sinks (--events, --save-video: the records the user asked for) stop the run when they
  cannot write, with exit 4 (edgeano.errors.EXIT_OUTPUT) and a line saying why (disk full ...);
- every other sink fails soft: `SinkSet` warns once per sink, counts its failures (periodic line,
  summary) and scoring goes on. A broker that is down or a browser that went away never stops
  inspection.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edgeano.errors import EXIT_OUTPUT, EdgeanoError


class Sink:
    name = "sink"
    needs_overlay = False
    required = False  # True: a failed write stops the run (exit 4) instead of being counted
    source_index: Optional[int] = None  # only frames of this source (None: all)

    def start(self, ctx: "LoopContext") -> None:
        pass

    def write(self, scored, annotated) -> bool:
        return False

    def state(self) -> str:
        return "ok"

    def close(self) -> None:
        pass


@dataclass
class LoopContext:
    """What the loop offers its sinks: a status snapshot, lazy rendering and the run's identity."""

    run_id: str
    sources: List[str]
    threshold: float
    status: Callable[[], Dict[str, Any]]  # the /api/status document (counters, fps, sources, sinks)
    render: Callable[[Any], Any]  # Scored -> annotated BGR frame (overlay), for sinks that draw lazily
    mask: Callable[[Any], Any]  # Scored -> HxW uint8 mask above the map threshold, or None
    log: Callable[[str], None] = print


def describe_os_error(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if e.errno == errno.EFBIG:
        return "the file size limit was reached"
    return e.strerror or str(e)


def check_writable(path, flag: str, folder: bool = False) -> Path:
    """Before the source opens: the output's folder exists (made if needed) and takes a file.
    One line naming the flag and the reason (exit 4), instead of a codec or temp-file error later."""
    path = Path(path)
    where = path if folder else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeanoError(f"{flag} {path}: cannot create the folder {where}: {describe_os_error(e)}", EXIT_OUTPUT)
    if not where.is_dir():
        raise EdgeanoError(f"{flag} {path}: {where} is not a folder", EXIT_OUTPUT)
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeano-write-check.", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EdgeanoError(f"{flag} {path}: cannot write into {where}: {describe_os_error(e)}", EXIT_OUTPUT)
    return path


class SinkSet:
    """The loop's sinks behind one guard: required sinks raise, optional ones are counted."""

    def __init__(self, sinks: List, log: Callable[[str], None]):
        self.sinks = list(sinks)
        self.log = log
        self.failures: Dict[int, int] = {id(s): 0 for s in self.sinks}
        self.needs_overlay = any(getattr(s, "needs_overlay", False) for s in self.sinks)

    @staticmethod
    def name_of(sink) -> str:
        return getattr(sink, "name", type(sink).__name__)

    def _failed(self, sink, what: str, e: BaseException) -> None:
        if getattr(sink, "required", False):
            raise e
        n = self.failures[id(sink)] = self.failures[id(sink)] + 1
        if n == 1:
            self.log(f"warning: {self.name_of(sink)} {what} failed ({type(e).__name__}: {str(e)[:200]}); "
                     "inspection goes on, failures are counted in the progress line")

    def start(self, ctx: LoopContext) -> None:
        for s in self.sinks:
            start = getattr(s, "start", None)
            if start is None:
                continue
            try:
                start(ctx)
            except EdgeanoError:
                raise  # a configuration error (a port already taken ...): the run stops before it starts
            except Exception as e:  # noqa: BLE001 - an optional sink that cannot start is counted, not fatal
                self._failed(s, "start", e)

    def write(self, scored, annotated) -> bool:
        quit_ = False
        for s in self.sinks:
            want = getattr(s, "source_index", None)
            if want is not None and want != scored.source_index:
                continue
            try:
                quit_ = bool(s.write(scored, annotated)) or quit_
            except Exception as e:  # noqa: BLE001 - see _failed
                self._failed(s, "write", e)
        return quit_

    def states(self) -> Dict[str, Dict[str, Any]]:
        out: Dict[str, Dict[str, Any]] = {}
        for s in self.sinks:
            state = getattr(s, "state", None)
            name = self.name_of(s)
            while name in out:
                name += "'"
            try:
                text = state() if state else "ok"
            except Exception as e:  # noqa: BLE001 - a sink's report must not stop the loop either
                text = f"state unavailable ({type(e).__name__})"
            out[name] = {"state": text, "failures": self.failures[id(s)]}
        return out

    def line(self) -> str:
        parts = [f"{n} {v['state']}" + (f" ({v['failures']} failed)" if v["failures"] else "")
                 for n, v in self.states().items() if n not in ("events", "video", "display")]
        return (" | " + ", ".join(parts)) if parts else ""

    def close(self) -> Optional[BaseException]:
        """Close every sink; the first failure of a required sink is returned for the caller to raise."""
        error = None
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - close the others first
                if getattr(s, "required", False):
                    error = error or e
                else:
                    self._failed(s, "close", e)
        return error
