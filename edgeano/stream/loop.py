"""The capture -> score -> sinks loop.

Capture runs in its own thread. Live sources (cameras, RTSP, CSI) hand over through a one-frame
slot: a newer frame replaces an unread one, so latency never grows when scoring is slower than
the camera. Files and folders go through a small bounded queue: the reader waits when it is full
(backpressure), so every frame is scored exactly once, in order.

Scoring is Engine.score split into its stages: `engine.preprocess.batch` runs in the capture
thread (ROI crop, resize, colour order, NCHW float32), so decoding and preprocessing of the next
frame overlap inference of this one; the main thread runs `engine.infer` and the threshold
(score >= engine.threshold, exactly as Engine.score). For a live source this preprocesses frames
that are later dropped: about a millisecond each at camera rate, bought for a shorter critical path.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from edgeano.errors import EdgeanoError
from edgeano.stream.overlay import Overlay, Roi
from edgeano.stream.sinks import Scored
from edgeano.stream.sources import SOURCE_EXIT
from edgeano.stream.stats import LoopStats

END = object()  # the capture thread is finished (end of file, or a live source lost for good)
MAX_BAD_IN_A_ROW = 1000  # a file that only yields unreadable frames is treated as ended


@dataclass
class Frame:
    index: int
    wall: float  # time.time() at capture
    t: float  # time.perf_counter() at capture
    image: np.ndarray  # the full frame, for overlays and saved anomalies
    capture_ms: float
    x: Optional[np.ndarray] = None  # the preprocessed 1xCxHxW input (ROI crop)
    pre_ms: float = 0.0


@dataclass
class LoopConfig:
    roi: Optional[Roi] = None
    max_frames: Optional[int] = None
    loop: bool = False  # restart a file/folder at its end
    print_every_s: float = 5.0
    reconnect_tries: int = 10  # live source lost: try this many times, then give up (exit 3)
    backoff_s: Tuple[float, float] = (0.5, 30.0)  # first wait, largest wait (doubling in between)
    queue_size: int = 4


class LatestFrame:
    """Live sources: one slot; a newer frame replaces an unread one (counted as dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0

    def put(self, item, stop: threading.Event) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def close(self, stop: threading.Event) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float):
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            if self._item is not None:
                item, self._item = self._item, None
                return item
            return END if self._closed else None


class FrameQueue:
    """Files and folders: a bounded queue; the reader blocks while it is full, so no frame is lost."""

    dropped = 0

    def __init__(self, size: int):
        self._q: "queue.Queue" = queue.Queue(maxsize=max(1, size))

    def put(self, item, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, stop: threading.Event) -> None:
        self.put(END, stop)

    def get(self, timeout: float):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None


class Capture(threading.Thread):
    """Reads frames from an opened source into a channel; reconnects live sources; restarts files on --loop."""

    def __init__(self, source, cfg: LoopConfig, stats: LoopStats, stop: threading.Event, log: Callable[[str], None],
                 preprocess=None):
        super().__init__(name="edgeano-capture", daemon=True)
        self.preprocess = preprocess
        self.source = source
        self.spec = source.spec
        self.cfg = cfg
        self.stats = stats
        self.stop = stop
        self.log = log
        self.channel = LatestFrame() if self.spec.live else FrameQueue(cfg.queue_size)
        self.error: Optional[BaseException] = None
        self.index = 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = e
        finally:
            self.channel.close(self.stop)

    def _run(self) -> None:
        pace = 1.0 / self.spec.fps if (not self.spec.live and self.spec.fps) else 0.0
        next_t = time.perf_counter()
        bad_in_a_row, ok_this_pass = 0, 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            status, image = self.source.read()
            t1 = time.perf_counter()
            if status == "ok":
                bad_in_a_row = 0
                ok_this_pass += 1
                self.channel.put(self._prepare(Frame(self.index, time.time(), t1, image, (t1 - t0) * 1e3)), self.stop)
                self.index += 1
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
                self.index += 1
                bad_in_a_row += 1
                if bad_in_a_row < MAX_BAD_IN_A_ROW:
                    continue
                self.log(f"warning: {MAX_BAD_IN_A_ROW} unreadable frames in a row from {self.spec.uri}; treating it as ended")
            # "end" (or too many bad frames)
            if self.spec.live:
                if not self._reconnect():
                    return
            elif self.cfg.loop and ok_this_pass > 0:
                self.source.close()
                self.source.open()
                ok_this_pass, bad_in_a_row = 0, 0
            else:
                return

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

    def _reconnect(self) -> bool:
        """Bounded exponential backoff: first, 2x, 4x ... capped; False (with self.error set) when giving up."""
        self.source.close()
        first, cap = self.cfg.backoff_s
        for attempt in range(1, self.cfg.reconnect_tries + 1):
            wait = min(cap, first * 2 ** (attempt - 1))
            self.log(f"source {self.spec.uri} lost; reconnecting in {wait:.1f} s (attempt {attempt}/{self.cfg.reconnect_tries})")
            if self.stop.wait(wait):
                return False
            try:
                self.source.open()
            except EdgeanoError:
                continue
            self.stats.reconnects += 1
            self.log(f"source {self.spec.uri} reconnected")
            return True
        self.error = EdgeanoError(f"source {self.spec.uri} lost: gave up after {self.cfg.reconnect_tries} reconnect attempts", SOURCE_EXIT)
        return False


def check_roi(roi: Optional[Roi], shape) -> None:
    if roi is None:
        return
    x, y, w, h = roi
    fh, fw = shape[:2]
    if x + w > fw or y + h > fh:
        raise EdgeanoError(f"--roi {x},{y},{w},{h} lies outside the {fw}x{fh} frame")


class StreamLoop:
    """Engine + opened source + sinks -> run() -> summary dict. stop() (or a sink) ends it cleanly."""

    def __init__(self, engine, source, sinks: List, cfg: LoopConfig, log: Callable[[str], None] = None):
        self.engine = engine
        self.source = source
        self.sinks = sinks
        self.cfg = cfg
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.stats = LoopStats()
        self.stop_event = threading.Event()
        stats_ref = (engine.meta.get("score_stats") or {}).get("p50")
        self.overlay = Overlay(engine.threshold, engine.preprocess, stats_ref)
        self.needs_overlay = any(s.needs_overlay for s in sinks)
        self.last_summary: dict = {}

    def stop(self) -> None:
        self.stop_event.set()

    def infer(self, x: np.ndarray) -> Tuple[float, bool, Optional[np.ndarray]]:
        """A preprocessed 1xCxHxW input -> (score, anomaly, model-resolution map or None), as Engine.score."""
        res = self.engine.result(self.engine.infer(x))  # the same postprocessing as Engine.score
        return float(res.scores[0]), bool(res.labels[0]), None if res.maps is None else res.maps[0]

    def _process(self, fr: Frame) -> bool:
        """Score one frame and feed the sinks; True when a sink asks to stop."""
        st = self.stats
        t0 = time.perf_counter()
        score, anomaly, amap = self.infer(fr.x)
        t1 = time.perf_counter()
        scored = Scored(fr.index, fr.wall, fr.image, score, anomaly, self.engine.threshold, (time.perf_counter() - fr.t) * 1e3, amap)
        annotated = None
        if self.needs_overlay:
            annotated = self.overlay.render(fr.image, score, anomaly, amap, self.cfg.roi, st.recent_fps())
        t2 = time.perf_counter()
        quit_ = False
        for sink in self.sinks:
            quit_ = sink.write(scored, annotated) or quit_
        t3 = time.perf_counter()
        st.add("capture", fr.capture_ms)
        st.add("pre", fr.pre_ms)
        st.add("infer", (t1 - t0) * 1e3)
        st.add("post", (t2 - t1) * 1e3)  # event record + overlay (heatmap resize and blend)
        st.add("sinks", (t3 - t2) * 1e3)
        st.frame_done(anomaly)
        return quit_

    def run(self) -> dict:
        cap = Capture(self.source, self.cfg, self.stats, self.stop_event, self.log, self.engine.preprocess)
        cap.start()
        next_print = time.perf_counter() + self.cfg.print_every_s
        error: Optional[BaseException] = None
        try:
            while not self.stop_event.is_set():
                item = cap.channel.get(0.1)
                now = time.perf_counter()
                if now >= next_print:
                    self.stats.dropped = cap.channel.dropped
                    self.log(self.stats.line())
                    next_print = now + self.cfg.print_every_s
                if item is None:
                    continue
                if item is END:
                    break
                if self._process(item):
                    break
                if self.cfg.max_frames and self.stats.frames >= self.cfg.max_frames:
                    break
        except BaseException as e:  # finalise outputs first, then re-raise
            error = e
        finally:
            self.stop_event.set()
            cap.join(timeout=5.0)
            if not cap.is_alive():  # a read stuck in a dead stream: leave it to the daemon thread, never release under it
                self.source.close()
            self.stats.dropped = cap.channel.dropped
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as e:  # noqa: BLE001 - close the others; report the first failure
                    error = error or e
            self.last_summary = self.stats.summary()
        if error is not None:
            raise error
        if cap.error is not None:
            raise cap.error
        return self.last_summary
