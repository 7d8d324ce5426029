"""--save-video: annotated frames -> a video file, written under a hidden temp name, checked, renamed.

The final name only ever holds a finished, playable file: on close the temp file is reopened and
its frames counted (OpenCV's writer reports nothing when the disk fills up); a short file is
refused with exit 4 and the previous video at that name stays as it was.

Live sources are written on the clock: each frame is repeated (or skipped) so that the video plays
at the speed things happened, whatever the loop dropped. Files and folders: one frame per frame.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from edgeano.errors import EXIT_OUTPUT, EdgeanoError
from edgeano.stream.sinks.base import Sink, check_writable

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}  # all written and read back by pip's and JetPack's OpenCV
MAX_REPEAT_S = 5.0  # a live gap longer than this (a reconnect) is not filled frame by frame


def check_video_path(path) -> Path:
    """Validate --save-video before the run starts: a known container and a writable folder."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_FOURCC:
        raise EdgeanoError(f"--save-video {path}: use one of {', '.join(VIDEO_FOURCC)} (mp4 = MPEG-4 part 2, avi/mkv = MJPEG)")
    if path.is_dir():
        raise EdgeanoError(f"--save-video {path} is a folder; give a file name such as {path / 'run.mp4'}")
    check_writable(path, "--save-video")
    return path


def per_source_path(path, index: int, n_sources: int) -> Path:
    """One video per source: run.mp4 -> run.0.mp4, run.1.mp4 ... when there are several."""
    path = Path(path)
    return path if n_sources <= 1 else path.with_name(f"{path.stem}.{index}{path.suffix}")


def count_frames(path: Path) -> int:
    """Frames a reader gets from the file: the container's count, trusted only if its last frame decodes."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
            if cap.read()[0]:
                return n
        cap.release()
        cap = cv2.VideoCapture(str(path))  # no usable count: read through
        n = 0
        while cap.read()[0]:
            n += 1
        return n
    finally:
        cap.release()


class VideoSink(Sink):
    name = "video"
    needs_overlay = True
    required = True

    def __init__(self, path, fps: float, live: bool = False, source_index=None):
        self.path = check_video_path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.live = live
        self.source_index = source_index
        self.writer = None
        self.size = None
        self.frames = 0  # frames handed to the writer (repeats included)
        self.t0 = None  # capture time of the first frame (live: the video's clock starts there)

    def _open(self, w: int, h: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
        if not self.writer.isOpened():
            raise EdgeanoError(f"cannot write video {self.path}: OpenCV has no {self.path.suffix} encoder here (try .avi)", EXIT_OUTPUT)
        self.size = (w, h)

    def _copies(self, timestamp: float) -> int:
        """Live: how many output frames this one fills, so frame k plays at t0 + k / fps."""
        if not self.live:
            return 1
        if self.t0 is None:
            self.t0 = timestamp
        due = int((timestamp - self.t0) * self.fps) + 1 - self.frames
        if due > MAX_REPEAT_S * self.fps:  # after a long gap: restart the clock instead of writing a still
            self.t0 = timestamp - self.frames / self.fps
            due = 1
        return max(0, due)

    def write(self, scored, annotated: np.ndarray) -> bool:
        h, w = annotated.shape[:2]
        if self.writer is None:
            self._open(w, h)
        if (w, h) != self.size:  # a reconnected camera may come back at another size
            annotated = cv2.resize(annotated, self.size, interpolation=cv2.INTER_AREA)
        for _ in range(self._copies(scored.timestamp)):
            self.writer.write(annotated)
            self.frames += 1
        return False

    def state(self) -> str:
        return f"{self.frames} frames"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if not self.tmp.exists():
            return
        if not self.frames:
            self.tmp.unlink()
            return
        got = count_frames(self.tmp)
        if got < self.frames:
            self.tmp.unlink()
            free = shutil.disk_usage(self.tmp.parent).free / 2**20
            why = "the disk is full" if free < 64 else "the write failed (disk full or a file size limit?)"
            raise EdgeanoError(f"--save-video {self.path} not written: {why}; only {got} of {self.frames} frames "
                               f"could be read back ({free:.0f} MB free)", EXIT_OUTPUT)
        os.replace(self.tmp, self.path)
