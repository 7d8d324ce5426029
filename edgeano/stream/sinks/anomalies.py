"""--save-anomalies DIR: NG frames as JPEG, with the overlay and (for a model with a map threshold)
the thresholded mask.

    DIR/<run>_<frame>.jpg           the frame as captured
    DIR/<run>_<frame>_heatmap.jpg   the annotated overlay
    DIR/<run>_<frame>_mask.png      255 where the map is at or above the artifact's map threshold

With several sources the source's position goes into the name (<run>_s1_<frame>...). Optional:
a failed write is counted, never fatal. Stops saving, with one warning, when the disk has less than
`min_free_mb` left: a line stuck on NG for a weekend must not fill the device.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from edgeano.errors import EXIT_OUTPUT, EdgeanoError
from edgeano.fileio import write_bytes
from edgeano.stream.sinks.base import Sink, check_writable


class AnomalySaver(Sink):
    name = "anomalies"
    needs_overlay = True

    def __init__(self, folder, run_id: str = "", min_free_mb: float = 500.0, warn=print, several_sources: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise EdgeanoError(f"--save-anomalies {self.folder} is a file; give a folder", EXIT_OUTPUT)
        check_writable(self.folder, "--save-anomalies", folder=True)
        self.run_id = run_id
        self.min_free_mb = min_free_mb
        self.warn = warn
        self.several = several_sources
        self.saved = 0
        self.full = False
        self.mask_of = None

    def start(self, ctx) -> None:
        self.mask_of = ctx.mask

    def _disk_ok(self) -> bool:
        if self.saved % 50 == 0:
            free_mb = shutil.disk_usage(self.folder).free / 2**20
            if free_mb < self.min_free_mb:
                self.full = True
                self.warn(f"warning: {self.folder} has {free_mb:.0f} MB free; no more anomaly frames are saved this run")
        return not self.full

    def _stem(self, s) -> str:
        parts = ([self.run_id] if self.run_id else []) + ([f"s{s.source_index}"] if self.several else []) + [f"{s.index:08d}"]
        return "_".join(parts)

    def write(self, s, annotated: np.ndarray) -> bool:
        if not s.anomaly or self.full or not self._disk_ok():
            return False
        stem = self._stem(s)
        files = [(f"{stem}.jpg", s.frame), (f"{stem}_heatmap.jpg", annotated)]
        mask = self.mask_of(s) if self.mask_of else None
        if mask is not None:
            files.append((f"{stem}_mask.png", mask))
        for name, img in files:
            ext = ".png" if name.endswith(".png") else ".jpg"
            ok, buf = cv2.imencode(ext, img, [cv2.IMWRITE_JPEG_QUALITY, 92] if ext == ".jpg" else [])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode {name}")
            write_bytes(self.folder / name, buf.tobytes())
        self.saved += 1
        return False

    def state(self) -> str:
        return f"{self.saved} saved" + (" (disk low: stopped)" if self.full else "")
