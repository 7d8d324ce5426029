"""Anomaly maps in the artifact's units: colour levels, the peak and the area above the map threshold.

An artifact whose model outputs a map may carry its normalisation in the metadata, meta["map"]
(defined and validated in one place, `edgeano.artifact.validate_map`):

    meta["map"] = {"unit": <raw map value of a high normal-pixel quantile, e.g. p99.9>,
                   "threshold": <the map threshold, raw units>, "method": "...", ...}

With it the overlay (camera loop, saved NG frames and `edgeano eval --plots` alike) never rescales per frame: a good frame stays cold and a colour means the same
on every frame. Colour level on OpenCV's JET scale (0 blue, 0.35 cyan, 0.5 green, 0.65 yellow,
0.875 pure red): 0 -> 0.35 from 0 to `unit` (what normal pixels reach), 0.35 -> 0.875 from `unit`
to `threshold` (green, yellow, red), pure red at and above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from edgeano.artifact import validate_map

NORMAL_LEVEL = 0.35  # where the normal quantile sits on the colour scale
RED_LEVEL = 0.875  # JET's pure red (above it JET darkens, which would read as "less")


@dataclass(frozen=True)
class MapScale:
    unit: float
    threshold: float
    method: str = ""

    @classmethod
    def from_meta(cls, meta: Dict[str, Any], source: str = "artifact") -> Optional["MapScale"]:
        if meta.get("map") is None:
            return None
        m = validate_map(meta["map"], source)
        return cls(float(m["unit"]), float(m["threshold"]), m["method"])

    def levels(self, amap: np.ndarray) -> np.ndarray:
        """Raw map values -> colour levels in [0, RED_LEVEL] (see the module docstring)."""
        m = np.nan_to_num(amap.astype(np.float32), nan=0.0, posinf=np.float32(1e30), neginf=0.0)
        top = max(self.threshold, self.unit * 1.000001)
        low = np.clip(m / self.unit, 0.0, 1.0) * NORMAL_LEVEL
        high = NORMAL_LEVEL + np.clip((m - self.unit) / (top - self.unit), 0.0, 1.0) * (RED_LEVEL - NORMAL_LEVEL)
        return np.where(m <= self.unit, low, high)


def roi_box(roi, frame_shape) -> Tuple[int, int, int, int]:
    return roi if roi else (0, 0, int(frame_shape[1]), int(frame_shape[0]))


def peak_and_area(amap: np.ndarray, roi, frame_shape, scale: Optional[MapScale]) -> Tuple[Dict[str, Any], Optional[int]]:
    """The map's maximum in frame pixels (the centre of its map cell), and the frame area at or above
    the map threshold (None without a map scale)."""
    x0, y0, w, h = roi_box(roi, frame_shape)
    mh, mw = amap.shape[-2:]
    flat = np.nan_to_num(amap.astype(np.float32), nan=-np.inf)
    iy, ix = np.unravel_index(int(np.argmax(flat)), flat.shape)
    peak = {"x": int(x0 + (ix + 0.5) * w / mw), "y": int(y0 + (iy + 0.5) * h / mh), "value": float(amap[iy, ix])}
    area = None
    if scale is not None:
        area = int(round(int(np.count_nonzero(amap >= scale.threshold)) * (w * h) / (mw * mh)))
    return peak, area


def threshold_mask(amap: np.ndarray, roi, frame_shape, scale: MapScale, preprocess) -> np.ndarray:
    """Frame-sized uint8 mask: 255 where the map (brought to the ROI's size) is at or above the threshold."""
    x0, y0, w, h = roi_box(roi, frame_shape)
    mask = np.zeros(frame_shape[:2], np.uint8)
    up = preprocess.resize_map(amap, (h, w))
    mask[y0 : y0 + h, x0 : x0 + w] = np.where(up >= scale.threshold, 255, 0).astype(np.uint8)
    return mask


def colorize_levels(levels: np.ndarray) -> np.ndarray:
    return cv2.applyColorMap((np.clip(levels, 0.0, 1.0) * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
