"""--events FILE.jsonl: one JSON line per frame (or per NG frame), schema in edgeano/stream/events.py.

Appends, so a restarted service keeps its history. Each line is written whole and flushed at least
every `flush_s` seconds and at once for NG frames. A file whose last line was torn (a crash or a
full disk mid-write) gets a newline first, so a new record is never glued onto half of an old one.
A write that fails (disk full) stops the run with exit 4: the record the user asked for cannot be kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from edgeano.errors import EXIT_OUTPUT, EdgeanoError
from edgeano.stream.events import dumps, event_record
from edgeano.stream.sinks.base import Sink, check_writable, describe_os_error


def ends_torn(path: Path) -> bool:
    """The file is non-empty and its last byte is not a newline."""
    try:
        size = path.stat().st_size
        if size == 0 or not path.is_file():
            return False
        with open(path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) != b"\n"
    except OSError:
        return False


class EventsSink(Sink):
    name = "events"
    required = True

    def __init__(self, path, only_anomalies: bool = False, run_id: str = "", flush_s: float = 1.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise EdgeanoError(f"--events {self.path} is a folder; give a file name such as {self.path / 'events.jsonl'}", EXIT_OUTPUT)
        check_writable(self.path, "--events")
        try:
            self.f = open(self.path, "a", encoding="utf-8")
            if ends_torn(self.path):
                self.f.write("\n")
        except OSError as e:
            raise EdgeanoError(f"--events {self.path}: cannot open it for writing: {describe_os_error(e)}", EXIT_OUTPUT)
        self.only_anomalies = only_anomalies
        self.run_id = run_id
        self.flush_s = flush_s
        self.last_flush = time.monotonic()
        self.lines = 0
        self.failed = False

    def _fail(self, e: OSError):
        self.failed = True
        return EdgeanoError(f"--events {self.path}: {describe_os_error(e)}; stopped after {self.lines} lines "
                            "(the file ends with whole lines up to the last flush)", EXIT_OUTPUT)

    def write(self, s, annotated) -> bool:
        if self.only_anomalies and not s.anomaly:
            return False
        try:
            self.f.write(dumps(event_record(s, self.run_id)) + "\n")
            self.lines += 1
            now = time.monotonic()
            if s.anomaly or now - self.last_flush >= self.flush_s:
                self.f.flush()
                self.last_flush = now
        except OSError as e:
            raise self._fail(e)
        return False

    def state(self) -> str:
        return f"{self.lines} lines"

    def close(self) -> None:
        if not self.f or self.f.closed:
            return
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
        except OSError as e:
            if not self.failed:
                raise self._fail(e)
        finally:
            try:
                self.f.close()
            except OSError:
                pass  # the buffer could not be written: already reported
