"""Capture threads: one per source, reading frames into a channel the loop drains.

Live sources (cameras, RTSP, CSI) hand over through a one-frame slot: a newer frame replaces an
unread one, so latency never grows when scoring is slower than the camera. Files and folders go
through a small bounded queue: the reader waits when it is full (backpressure), so every frame is
scored exactly once, in order.

The engine's preprocessing (ROI crop, resize, colour order, NCHW float32) runs here, in the
capture thread, so decoding and preprocessing of the next frame overlap inference of this one.

A live read that blocks (a dead RTSP server behind a GStreamer pipeline without a timeout) is the
loop's watchdog's business: `reading_since` says how long the current read has taken; the loop
abandons a stalled capture (`abandon()`) and starts a fresh one on a new source object. The stuck
thread is never joined and its source never released under it; when its read returns it closes
its own source and leaves without touching the channel.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from edgeano.errors import EXIT_SOURCE, EdgeanoError
from edgeano.stream.stats import SourceStats

END = object()  # the capture thread is finished (end of file, or a live source lost for good)
MAX_BAD_IN_A_ROW = 1000  # a file that only yields unreadable frames is treated as ended

Roi = Tuple[int, int, int, int]


@dataclass
class Frame:
    index: int
    wall: float  # time.time() at capture
    t: float  # time.perf_counter() at capture
    image: np.ndarray  # the full frame, for overlays and saved anomalies
    capture_ms: float
    x: Optional[np.ndarray] = None  # the preprocessed 1xCxHxW input (ROI crop)
    pre_ms: float = 0.0
    source_index: int = 0


class LatestFrame:
    """Live sources: one slot; a newer frame replaces an unread one (counted as dropped)."""

    def __init__(self, ready: Optional[threading.Event] = None):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.ready = ready or threading.Event()

    def put(self, item, stop: threading.Event) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()
        self.ready.set()

    def close(self, stop: threading.Event) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.ready.set()

    def get(self, timeout: float):
        with self._cond:
            if self._item is None and not self._closed and timeout > 0:
                self._cond.wait(timeout)
            if self._item is not None:
                item, self._item = self._item, None
                return item
            return END if self._closed else None


class FrameQueue:
    """Files and folders: a bounded queue; the reader blocks while it is full, so no frame is lost."""

    dropped = 0

    def __init__(self, size: int, ready: Optional[threading.Event] = None):
        self._q: "queue.Queue" = queue.Queue(maxsize=max(1, size))
        self.ready = ready or threading.Event()

    def put(self, item, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                self.ready.set()
                return
            except queue.Full:
                continue

    def close(self, stop: threading.Event) -> None:
        self.put(END, stop)

    def get(self, timeout: float):
        try:
            return self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None


def check_roi(roi: Optional[Roi], shape) -> None:
    if roi is None:
        return
    x, y, w, h = roi
    fh, fw = shape[:2]
    if x + w > fw or y + h > fh:
        raise EdgeanoError(f"--roi {x},{y},{w},{h} lies outside the {fw}x{fh} frame")


class Capture(threading.Thread):
    """Reads frames from a source into a channel; reconnects live sources; restarts files on --loop."""

    def __init__(self, source, cfg, stats: SourceStats, stop: threading.Event, log: Callable[[str], None],
                 preprocess=None, channel=None, source_index: int = 0, reconnect_first: bool = False):
        super().__init__(name=f"edgeano-capture-{source_index}", daemon=True)
        self.preprocess = preprocess
        self.source = source
        self.spec = source.spec
        self.cfg = cfg
        self.stats = stats
        self.stop = stop
        self.log = log
        self.source_index = source_index
        self.channel = channel or (LatestFrame() if self.spec.live else FrameQueue(cfg.queue_size))
        self.error: Optional[BaseException] = None
        self.index = stats.next_index
        self.reading_since: Optional[float] = None  # perf_counter when the current read began
        self.abandoned = threading.Event()
        self.reconnect_first = reconnect_first

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = e
        finally:
            if self.abandoned.is_set():
                self.source.close()  # our read returned after all: release what we own, touch nothing else
            else:
                self.stats.state = "ended" if self.error is None else "lost"
                self.channel.close(self.stop)

    def abandon(self) -> None:
        self.abandoned.set()

    def _read(self):
        self.reading_since = time.perf_counter()
        try:
            return self.source.read()
        finally:
            self.reading_since = None

    def _run(self) -> None:
        if self.reconnect_first and not self._reconnect(close=False):
            return
        self.stats.state = "ok"
        pace = 1.0 / self.spec.fps if (not self.spec.live and self.spec.fps) else 0.0
        next_t = time.perf_counter()
        bad_in_a_row, ok_this_pass = 0, 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            status, image = self._read()
            t1 = time.perf_counter()
            if self.abandoned.is_set():
                return
            if status == "ok":
                bad_in_a_row = 0
                ok_this_pass += 1
                self.stats.read_ok += 1
                fr = Frame(self.index, time.time(), t1, image, (t1 - t0) * 1e3, source_index=self.source_index)
                self.channel.put(self._prepare(fr), self.stop)
                self._next_index()
                if pace:
                    next_t += pace
                    delay = next_t - time.perf_counter()
                    if delay > 0:
                        self.stop.wait(delay)
                    else:
                        next_t = time.perf_counter()
                continue
            if status == "bad":
                self.stats.bad += 1
                self._next_index()
                bad_in_a_row += 1
                if bad_in_a_row < MAX_BAD_IN_A_ROW:
                    continue
                self.log(f"warning: {MAX_BAD_IN_A_ROW} unreadable frames in a row from {self.spec.uri}; treating it as ended")
            # "end" (or too many bad frames)
            if self.spec.live:
                if not self._reconnect():
                    return
                bad_in_a_row = 0  # a fresh connection starts with a clean slate
            elif self.cfg.loop and ok_this_pass > 0:
                self.source.close()
                self.source.open()
                ok_this_pass, bad_in_a_row = 0, 0
            else:
                self._check_anything_read()
                return

    def _next_index(self) -> None:
        self.index += 1
        self.stats.next_index = self.index

    def _check_anything_read(self) -> None:
        """A file or folder that gave no readable frame at all is a source failure, not a quiet success."""
        if self.stats.read_ok == 0:
            what = f"all {self.stats.bad} frames/images were unreadable" if self.stats.bad else "it holds no frame"
            self.error = EdgeanoError(f"source {self.spec.uri}: nothing could be scored ({what})", EXIT_SOURCE)

    def _prepare(self, fr: Frame) -> Frame:
        """ROI crop + the engine's preprocessing, here in the capture thread (off the inference path)."""
        if self.preprocess is None:
            return fr
        t0 = time.perf_counter()
        roi = self.cfg.roi
        check_roi(roi, fr.image.shape)
        crop = fr.image[roi[1] : roi[1] + roi[3], roi[0] : roi[0] + roi[2]] if roi else fr.image
        fr.x = self.preprocess.batch([crop])
        fr.pre_ms = (time.perf_counter() - t0) * 1e3
        return fr

    def _reconnect(self, close: bool = True) -> bool:
        """Bounded exponential backoff: first, 2x, 4x ... capped; False (with self.error set) when giving up."""
        if close:
            self.source.close()
        self.stats.state = "reconnecting"
        first, cap = self.cfg.backoff_s
        for attempt in range(1, self.cfg.reconnect_tries + 1):
            wait = min(cap, first * 2 ** (attempt - 1))
            self.log(f"source {self.spec.uri} lost; reconnecting in {wait:.1f} s (attempt {attempt}/{self.cfg.reconnect_tries})")
            if self.stop.wait(wait) or self.abandoned.is_set():
                return False
            try:
                self.source.open()
            except EdgeanoError:
                continue
            self.stats.reconnects += 1
            self.stats.state = "ok"
            self.log(f"source {self.spec.uri} reconnected")
            return True
        self.error = EdgeanoError(f"source {self.spec.uri} lost: gave up after {self.cfg.reconnect_tries} reconnect attempts", EXIT_SOURCE)
        return False
