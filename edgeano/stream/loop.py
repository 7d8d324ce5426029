"""The capture -> score -> sinks loop, for one source or several.

One capture thread per source (edgeano/stream/capture.py) preprocesses its frames. The main thread
takes at most one waiting frame from each source, scores them in one batched inference call
(`engine.infer`, which splits a batch larger than the artifact's), thresholds them exactly as
Engine.score, and feeds each frame to the sinks with its own source name, overlay and counters.

A watchdog runs in the main thread: a live source whose read has not returned for
`cfg.stall_s` seconds counts as lost; its capture is abandoned (never joined, its source never
released under the stuck read) and a fresh capture reconnects on a new source object.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgeano.stream.capture import END, Capture, Frame, FrameQueue, LatestFrame, check_roi  # noqa: F401 - re-exported
from edgeano.stream.events import Scored
from edgeano.stream.maps import MapScale, peak_and_area, threshold_mask
from edgeano.stream.overlay import Overlay, Roi
from edgeano.stream.sinks.base import LoopContext, SinkSet
from edgeano.stream.sources import make_source
from edgeano.stream.stats import LoopStats


@dataclass
class LoopConfig:
    roi: Optional[Roi] = None
    max_frames: Optional[int] = None
    loop: bool = False  # restart a file/folder at its end
    print_every_s: float = 5.0
    reconnect_tries: int = 10  # live source lost: try this many times, then give up (exit 3)
    backoff_s: Tuple[float, float] = (0.5, 30.0)  # first wait, largest wait (doubling in between)
    queue_size: int = 4
    stall_s: float = 10.0  # a live read that takes longer counts as a lost source (0 = no watchdog)


class StreamLoop:
    """Engine + opened source(s) + sinks -> run() -> summary dict. stop() (or a sink) ends it cleanly."""

    def __init__(self, engine, sources, sinks: List, cfg: LoopConfig, log: Callable[[str], None] = None,
                 run_id: str = "", names: Optional[Sequence[str]] = None, source_factory=make_source):
        self.engine = engine
        self.sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        self.names = list(names) if names else [s.spec.uri for s in self.sources]
        self.cfg = cfg
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.sinks = SinkSet(sinks, self.log)
        self.run_id = run_id
        self.source_factory = source_factory
        self.stats = LoopStats(sources=self.names)
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # any channel got a frame (or closed)
        stats_ref = (engine.meta.get("score_stats") or {}).get("p50")
        self.map_scale = MapScale.from_meta(engine.meta, getattr(engine, "name", "artifact"))
        self.overlay = Overlay(engine.threshold, engine.preprocess, stats_ref, self.map_scale)
        self.captures: List[Optional[Capture]] = []  # the current capture of each source; None once it ended
        self.all_captures: List[Capture] = []  # every capture started, abandoned ones too
        self.last_summary: dict = {}
        self.seq = 0

    def stop(self) -> None:
        self.stop_event.set()

    # -- what sinks may ask for -----------------------------------------------------------------
    def render(self, s: Scored) -> np.ndarray:
        return self.overlay.render(s.frame, s.score, s.anomaly, s.amap, self.cfg.roi, self.stats.recent_fps())

    def mask(self, s: Scored) -> Optional[np.ndarray]:
        if s.amap is None or self.map_scale is None:
            return None
        return threshold_mask(s.amap, self.cfg.roi, s.frame.shape, self.map_scale, self.engine.preprocess)

    def status(self) -> dict:
        """The live status document (/api/status, the MQTT status topic, OPC UA)."""
        st = self.stats
        return {"run": self.run_id, "frames": st.frames, "ok": st.frames - st.anomalies, "ng": st.anomalies,
                "fps": round(st.recent_fps(), 2), "threshold": self.engine.threshold, "last_ng_time": st.last_ng_time,
                "sources": [{**s.as_dict(), "last_label": s.last_label, "last_score": s.last_score} for s in st.sources],
                "sinks": self.sinks.states(), "seconds": round(st.elapsed, 1)}

    # -- scoring --------------------------------------------------------------------------------
    def infer(self, x: np.ndarray):
        """A preprocessed NxCxHxW batch -> engine Result, thresholded as Engine.score."""
        return self.engine.result(self.engine.infer(x))

    def _gather(self) -> Tuple[List[Frame], bool]:
        """At most one waiting frame per source; (frames, every source has ended)."""
        batch, open_ = [], 0
        for i, cap in enumerate(self.captures):
            if cap is None:
                continue
            item = cap.channel.get(0)
            if item is END:
                self.captures[i] = None
                if cap.error is not None and any(self.captures):
                    self.log(f"warning: {cap.error}; the other sources go on")
                continue
            open_ += 1
            if item is not None:
                batch.append(item)
        return batch, open_ == 0 and not batch

    def _process(self, frames: List[Frame]) -> bool:
        """Score a batch and feed the sinks; True when a sink asks to stop."""
        st = self.stats
        t0 = time.perf_counter()
        res = self.infer(frames[0].x if len(frames) == 1 else np.concatenate([f.x for f in frames]))
        t1 = time.perf_counter()
        st.batches += 1
        quit_ = False
        for k, fr in enumerate(frames):
            t2 = time.perf_counter()
            amap = None if res.maps is None else res.maps[k]
            s = Scored(fr.index, fr.wall, fr.image, float(res.scores[k]), bool(res.labels[k]), self.engine.threshold,
                       (t2 - fr.t) * 1e3, amap, self.names[fr.source_index], fr.source_index, self.seq)
            self.seq += 1
            if amap is not None:
                s.peak, s.area_px = peak_and_area(amap, self.cfg.roi, fr.image.shape, self.map_scale)
            annotated = self.render(s) if self.sinks.needs_overlay else None
            t3 = time.perf_counter()
            quit_ = self.sinks.write(s, annotated) or quit_
            t4 = time.perf_counter()
            st.add("capture", fr.capture_ms)
            st.add("pre", fr.pre_ms)
            st.add("infer", (t1 - t0) * 1e3)
            st.add("post", (t3 - t2) * 1e3)  # event record + overlay (heatmap resize and blend)
            st.add("sinks", (t4 - t3) * 1e3)
            st.frame_done(s.anomaly, fr.source_index, s.score)
        return quit_

    # -- the watchdog ---------------------------------------------------------------------------
    def _watchdog(self, now: float) -> None:
        if not self.cfg.stall_s:
            return
        for i, cap in enumerate(self.captures):
            if cap is None or not cap.spec.live or cap.reading_since is None or now - cap.reading_since < self.cfg.stall_s:
                continue
            self.log(f"source {cap.spec.uri}: no frame for {self.cfg.stall_s:g} s; treating it as lost")
            cap.abandon()
            cap.stats.stalls += 1
            fresh = Capture(self.source_factory(cap.spec), self.cfg, cap.stats, self.stop_event, self.log,
                            self.engine.preprocess, channel=cap.channel, source_index=i, reconnect_first=True)
            self.captures[i] = fresh
            self.all_captures.append(fresh)
            fresh.start()

    def _start_captures(self) -> None:
        for i, src in enumerate(self.sources):
            channel = LatestFrame(self.ready) if src.spec.live else FrameQueue(self.cfg.queue_size, self.ready)
            cap = Capture(src, self.cfg, self.stats.sources[i], self.stop_event, self.log, self.engine.preprocess,
                          channel=channel, source_index=i)
            self.captures.append(cap)
            self.all_captures.append(cap)
            cap.start()

    def _periodic(self) -> None:
        for cap, src in zip(self.captures, self.stats.sources):
            if cap is not None:
                src.dropped = cap.channel.dropped
        self.log(self.stats.line() + self.sinks.line())

    def run(self) -> dict:
        ctx = LoopContext(self.run_id, self.names, self.engine.threshold, self.status, self.render, self.mask, self.log)
        try:
            self.sinks.start(ctx)
        except BaseException:
            self.sinks.close()
            raise
        self.stats.started = time.perf_counter()  # the fps counts from the first capture, not from sink start-up
        self._start_captures()
        next_print = time.perf_counter() + self.cfg.print_every_s
        error: Optional[BaseException] = None
        try:
            while not self.stop_event.is_set():
                self.ready.clear()
                frames, ended = self._gather()
                now = time.perf_counter()
                if now >= next_print:
                    self._periodic()
                    next_print = now + self.cfg.print_every_s
                self._watchdog(now)
                if ended:
                    break
                if not frames:
                    self.ready.wait(0.1)
                    continue
                if self._process(frames):
                    break
                if self.cfg.max_frames and self.stats.frames >= self.cfg.max_frames:
                    break
        except BaseException as e:  # finalise outputs first, then re-raise
            error = e
        finally:
            error = self._finish(error)
        if error is not None:
            raise error
        return self.last_summary

    def _finish(self, error: Optional[BaseException]) -> Optional[BaseException]:
        self.stop_event.set()
        for cap in self.all_captures:
            if cap.abandoned.is_set():
                continue  # its thread closes its own source if its read ever returns
            cap.join(timeout=5.0)
            if not cap.is_alive():  # a read stuck in a dead stream: leave it to the daemon thread, never release under it
                cap.source.close()
            cap.stats.dropped = cap.channel.dropped
        close_error = self.sinks.close()
        self.last_summary = self.stats.summary()
        self.last_summary["sinks"] = self.sinks.states()
        errors = [c.error for c in self.all_captures if c.error is not None]
        return error or close_error or (errors[0] if errors else None)
