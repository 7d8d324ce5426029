"""Where scored frames go: a display window, an annotated video file, JSON-lines events, saved anomaly frames.

Each sink has `needs_overlay`, `write(scored, annotated) -> bool` (True = the user asked to stop,
e.g. `q` in the window) and `close()`, which must leave a complete file even after SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edgeano.errors import EdgeanoError
from edgeano.fileio import write_bytes

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}  # all written and read back by pip's and JetPack's OpenCV


@dataclass
class Scored:
    """One frame after scoring."""

    index: int  # position in the source (counts on across --loop restarts)
    timestamp: float  # wall-clock capture time, seconds since the epoch
    frame: np.ndarray  # the full BGR frame (not the ROI crop)
    score: float
    anomaly: bool
    threshold: float
    latency_ms: float  # capture -> result
    amap: Optional[np.ndarray] = None  # model-resolution anomaly map, when the model has one


def display_available() -> bool:
    """A window can be shown: OpenCV built with a GUI backend and (on Linux) a display to draw on."""
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip().upper()
    if not gui or gui == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class DisplaySink:
    needs_overlay = True
    WINDOW = "edgeano"

    def __init__(self):
        cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)

    def write(self, scored: Scored, annotated: np.ndarray) -> bool:
        cv2.imshow(self.WINDOW, annotated)
        key = cv2.waitKey(1) & 0xFF
        return key in (ord("q"), 27)  # q or Esc stops the run

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.WINDOW)
        except cv2.error:
            pass


def check_video_path(path) -> Path:
    """Validate --save-video before the run starts: a known container and a writable folder."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_FOURCC:
        raise EdgeanoError(f"--save-video {path}: use one of {', '.join(VIDEO_FOURCC)} (mp4 = MPEG-4 part 2, avi/mkv = MJPEG)")
    if path.is_dir():
        raise EdgeanoError(f"--save-video {path} is a folder; give a file name such as {path / 'run.mp4'}")
    return path


class VideoSink:
    """Annotated frames -> a video file, written under a hidden temp name and renamed on close,
    so the final name only ever holds a finished, playable file."""

    needs_overlay = True

    def __init__(self, path, fps: float):
        self.path = check_video_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.writer = None
        self.size = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
        if not self.writer.isOpened():
            raise EdgeanoError(f"cannot write video {self.path}: OpenCV has no encoder for {self.path.suffix} here (try .avi)")
        self.size = (w, h)

    def write(self, scored: Scored, annotated: np.ndarray) -> bool:
        h, w = annotated.shape[:2]
        if self.writer is None:
            self._open(w, h)
        if (w, h) != self.size:  # a reconnected camera may come back at another size
            annotated = cv2.resize(annotated, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(annotated)
        self.frames += 1
        return False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.frames and self.tmp.exists():
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


class EventsSink:
    """One JSON line per frame (or per anomaly). Appends, so a restarted service keeps its history;
    each line is written whole and flushed at least every `flush_s` seconds and at once for anomalies,
    so a crash loses at most the last second of OK frames and never leaves half a line behind a good one."""

    needs_overlay = False

    def __init__(self, path, only_anomalies: bool = False, run_id: str = "", flush_s: float = 1.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise EdgeanoError(f"--events {self.path} is a folder; give a file name such as {self.path / 'events.jsonl'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a", encoding="utf-8")
        self.only_anomalies = only_anomalies
        self.run_id = run_id
        self.flush_s = flush_s
        self.last_flush = time.monotonic()
        self.lines = 0

    def write(self, s: Scored, annotated) -> bool:
        if self.only_anomalies and not s.anomaly:
            return False
        rec = {"run": self.run_id, "frame": s.index, "timestamp": round(s.timestamp, 3), "score": round(float(s.score), 6),
               "label": "NG" if s.anomaly else "OK", "threshold": round(float(s.threshold), 6),
               "latency_ms": round(s.latency_ms, 2)}
        self.f.write(json.dumps(rec) + "\n")
        self.lines += 1
        now = time.monotonic()
        if s.anomaly or now - self.last_flush >= self.flush_s:
            self.f.flush()
            self.last_flush = now
        return False

    def close(self) -> None:
        if self.f and not self.f.closed:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


class AnomalySaver:
    """NG frames -> DIR/<run>_<frame>.jpg (as captured) and <run>_<frame>_heatmap.jpg (the overlay).
    Stops saving, with one warning, when the disk has less than `min_free_mb` left: a line stuck on
    NG for a weekend must not fill the device."""

    needs_overlay = True

    def __init__(self, folder, run_id: str = "", min_free_mb: float = 500.0, warn=print):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise EdgeanoError(f"--save-anomalies {self.folder} is a file; give a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.min_free_mb = min_free_mb
        self.warn = warn
        self.saved = 0
        self.full = False

    def _disk_ok(self) -> bool:
        if self.saved % 50 == 0:
            free_mb = shutil.disk_usage(self.folder).free / 2**20
            if free_mb < self.min_free_mb:
                self.full = True
                self.warn(f"warning: {self.folder} has {free_mb:.0f} MB free; no more anomaly frames are saved this run")
        return not self.full

    def write(self, s: Scored, annotated: np.ndarray) -> bool:
        if not s.anomaly or self.full or not self._disk_ok():
            return False
        stem = f"{self.run_id}_{s.index:08d}" if self.run_id else f"{s.index:08d}"
        for name, img in ((f"{stem}.jpg", s.frame), (f"{stem}_heatmap.jpg", annotated)):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if ok:
                write_bytes(self.folder / name, buf.tobytes())
        self.saved += 1
        return False

    def close(self) -> None:
        pass


__all__ = ["Scored", "DisplaySink", "VideoSink", "EventsSink", "AnomalySaver", "display_available", "check_video_path"]
