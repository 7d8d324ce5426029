"""Frame sources addressed by URI, like jetson-inference's videoSource.

    --camera 0 | /dev/video0 | v4l2:///dev/video0     USB/V4L2 camera (live)
    csi://0                                           MIPI CSI camera via GStreamer nvarguscamerasrc (live)
    rtsp://host/stream | http(s)://...                network stream (live)
    gst://<pipeline> | "<src> ! ... ! appsink"        raw GStreamer pipeline (live unless it starts with filesrc)
    path/to/clip.mp4 | file://path                    video file (every frame, in order)
    path/to/folder/ | path/to/image.png               images sorted by name (every image, in order)

Every source hands out HxWx3 uint8 BGR frames. `read()` returns (status, frame) with status
"ok", "bad" (an unreadable frame: count it and go on) or "end" (file finished / live stream lost).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np

from edgeano.data.images import IMAGE_SUFFIXES, list_images, read_image, to_bgr8
from edgeano.errors import EXIT_SOURCE, EdgeanoError

SOURCE_EXIT = EXIT_SOURCE  # a source that will not open (or is lost for good) exits with this code
NETWORK_TIMEOUT_MS = 10000
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class SourceSpec:
    uri: str  # what the user wrote, for messages
    kind: str  # camera | csi | network | gstreamer | file | folder
    target: Union[int, str]  # camera index, path, URL or pipeline
    live: bool  # live sources keep only the newest frame and reconnect; files lose no frame
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None

    @property
    def needs_gstreamer(self) -> bool:
        return self.kind in ("csi", "gstreamer")


def opencv_has(backend: str) -> bool:
    """Whether this OpenCV build lists `backend` (e.g. "GStreamer", "FFMPEG") as YES under Video I/O."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip().lower() == backend.lower():
            return value.strip().upper().startswith("YES")
    return False


def csi_pipeline(sensor: int, width: Optional[int], height: Optional[int], fps: Optional[float]) -> str:
    """nvarguscamerasrc -> NVMM -> nvvidconv (BGRx) -> videoconvert (BGR) -> appsink keeping the newest buffer."""
    w, h, f = width or 1280, height or 720, int(round(fps or 30))
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={w},height={h},framerate={f}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def network_pipeline(url: str, timeout_s: float = NETWORK_TIMEOUT_MS / 1000) -> str:
    """GStreamer pipeline for a network stream (JetPack's OpenCV has no FFmpeg). decodebin picks the
    hardware decoder (nvv4l2decoder) where there is one. RTSP goes through rtspsrc with its UDP and
    TCP timeouts set, so a dead camera ends the stream (-> reconnect) instead of leaving the read
    blocked; the loop's watchdog (--stall-timeout) covers whatever still blocks."""
    sink = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    if url.lower().startswith(("rtsp://", "rtsps://")):
        us = int(timeout_s * 1e6)
        loc = url.replace('"', '%22')
        return f'rtspsrc location="{loc}" latency=200 timeout={us} tcp-timeout={us} ! decodebin ! {sink}'
    return f"uridecodebin uri={url} ! {sink}"


def parse_source(camera: Optional[int] = None, source: Optional[str] = None, width: Optional[int] = None,
                 height: Optional[int] = None, fps: Optional[float] = None) -> SourceSpec:
    """--camera N or --source URI -> SourceSpec; raises EdgeanoError (exit 3) for a path that does not exist."""
    if (camera is None) == (source is None):
        raise EdgeanoError("give exactly one of --camera N or --source URI")
    kw = dict(width=width, height=height, fps=fps)
    if camera is not None:
        return SourceSpec(f"camera {camera}", "camera", int(camera), True, **kw)
    uri = source.strip()
    low = uri.lower()
    if low.startswith("gst://") or " ! " in uri:
        pipeline = uri[6:] if low.startswith("gst://") else uri
        return SourceSpec(uri, "gstreamer", pipeline, not pipeline.lstrip().startswith("filesrc"), **kw)
    if low.startswith("csi://"):
        sensor = uri[6:]
        if not sensor.isdigit():
            raise EdgeanoError(f"bad CSI source {uri!r}: use csi://N with N the sensor id (csi://0)")
        return SourceSpec(uri, "csi", csi_pipeline(int(sensor), width, height, fps), True, **kw)
    if low.startswith("v4l2://"):
        uri_path = uri[7:]
        m = re.fullmatch(r"/dev/video(\d+)", uri_path)
        return SourceSpec(uri, "camera", int(m.group(1)) if m else uri_path, True, **kw)
    m = re.fullmatch(r"/dev/video(\d+)", uri)
    if m or uri.isdigit():
        return SourceSpec(uri, "camera", int(m.group(1) if m else uri), True, **kw)
    if low.startswith(NETWORK_SCHEMES):
        return SourceSpec(uri, "network", uri, True, **kw)
    path = Path(uri[7:] if low.startswith("file://") else uri).expanduser()
    if path.is_dir():
        return SourceSpec(uri, "folder", str(path), False, **kw)
    if path.is_file():
        kind = "folder" if path.suffix.lower() in IMAGE_SUFFIXES else "file"
        return SourceSpec(uri, kind, str(path), False, **kw)
    raise EdgeanoError(f"source not found: {uri} (expected a camera, csi://N, rtsp://..., a video file or an image folder)", SOURCE_EXIT)


class FolderSource:
    """Images in name order (a single image file is a one-image folder)."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.files: List[Path] = []
        self.pos = 0
        self.fps = spec.fps or 0.0

    def open(self) -> None:
        p = Path(self.spec.target)
        self.files = [p] if p.is_file() else list_images(p)
        if not self.files:
            raise EdgeanoError(f"cannot open source {self.spec.uri}: no images ({', '.join(IMAGE_SUFFIXES)}) in it", SOURCE_EXIT)
        self.pos = 0

    def read(self) -> Tuple[str, Optional[np.ndarray]]:
        if self.pos >= len(self.files):
            return "end", None
        img = read_image(self.files[self.pos])
        self.pos += 1
        return ("ok", img) if img is not None else ("bad", None)

    def close(self) -> None:
        self.pos = 0


class CaptureSource:
    """Everything OpenCV's VideoCapture opens: cameras, files, network streams, GStreamer pipelines."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.cap = None
        self.fps = 0.0

    def _backend_and_target(self):
        s = self.spec
        if s.kind == "camera":
            return (cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY), s.target
        if s.needs_gstreamer:
            return cv2.CAP_GSTREAMER, s.target
        if s.kind == "network" and not opencv_has("FFMPEG") and opencv_has("GStreamer"):
            return cv2.CAP_GSTREAMER, network_pipeline(s.target)
        if s.kind == "file" and not opencv_has("FFMPEG") and opencv_has("GStreamer"):
            loc = str(Path(s.target).resolve()).replace('"', '\\"')
            return cv2.CAP_GSTREAMER, f'filesrc location="{loc}" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink sync=false'
        return cv2.CAP_ANY, s.target

    def open(self) -> None:
        s = self.spec
        backend, target = self._backend_and_target()
        if backend == cv2.CAP_GSTREAMER and not opencv_has("GStreamer"):
            raise EdgeanoError(
                f"cannot open {s.uri}: this OpenCV ({cv2.__version__}) was built without GStreamer, which {s.kind} sources need; "
                "on a Jetson use JetPack's OpenCV (python3-opencv), not pip's opencv-python", SOURCE_EXIT)
        if s.kind == "network" and backend == cv2.CAP_ANY and opencv_has("FFMPEG"):
            # bounded waits, so a dead stream returns an error (-> reconnect) instead of hanging the reader
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                                             cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(target, backend)
        if not cap.isOpened():
            cap.release()
            hint = ""
            if s.kind == "camera" and isinstance(s.target, int) and not Path(f"/dev/video{s.target}").exists():
                hint = f" (/dev/video{s.target} does not exist)"
            raise EdgeanoError(f"cannot open source {s.uri}{hint}", SOURCE_EXIT)
        if s.kind == "camera":  # requests; the driver picks the nearest mode it has
            if s.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
            if s.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
            if s.fps:
                cap.set(cv2.CAP_PROP_FPS, s.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: we want the newest frame
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.cap = cap

    def read(self) -> Tuple[str, Optional[np.ndarray]]:
        if self.cap is None:
            return "end", None
        try:
            ok, frame = self.cap.read()
        except cv2.error:
            return "bad", None
        if not ok or frame is None:
            return "end", None
        if frame.size == 0:
            return "bad", None
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            try:
                frame = to_bgr8(frame)
            except ValueError:
                return "bad", None
        return "ok", frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def make_source(spec: SourceSpec):
    """A SourceSpec -> a source object, not yet opened (FolderSource or CaptureSource)."""
    return FolderSource(spec) if spec.kind == "folder" else CaptureSource(spec)


def open_source(spec: SourceSpec):
    """A SourceSpec -> an opened source (FolderSource or CaptureSource); EdgeanoError(exit 3) if it will not open."""
    src = make_source(spec)
    src.open()
    return src


def quiet_opencv() -> None:
    """OpenCV prints a WARN per failed open; our one-line error says it better."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # older builds without cv2.utils.logging
        pass
