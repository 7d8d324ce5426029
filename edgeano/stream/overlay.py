"""The annotated frame: OK/NG banner, score against threshold, FPS, ROI box and the anomaly heatmap.

Heatmap colours: in the artifact's map units where its metadata has `map` (edgeano/stream/maps.py:
a good frame stays cold, a colour means the same on every frame). Artifacts without it (older
exports, GANomaly) fall back to each map's own range (min -> blue, max -> red). In both, the
heatmap's *opacity* follows the score: faint at the typical normal score (`score_stats.p50`),
full at the threshold and above. So where = colour, how bad = opacity.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from edgeano.stream.maps import MapScale, colorize_levels

OK_COLOR = (60, 180, 60)  # BGR
NG_COLOR = (40, 40, 230)
ROI_COLOR = (255, 200, 0)
MIN_ALPHA, MAX_ALPHA = 0.15, 0.55

Roi = Tuple[int, int, int, int]  # x, y, w, h


def heatmap_alpha(score: float, threshold: float, normal_ref: Optional[float]) -> float:
    """Opacity of the heatmap: MIN_ALPHA at the normal reference score, MAX_ALPHA at the threshold."""
    if not np.isfinite(threshold):
        return MIN_ALPHA
    lo = normal_ref if normal_ref is not None and normal_ref < threshold else 0.0
    span = threshold - lo
    t = 1.0 if span <= 0 else float(np.clip((score - lo) / span, 0.0, 1.0))
    return MIN_ALPHA + t * (MAX_ALPHA - MIN_ALPHA)


def colorize(amap: np.ndarray, scale: Optional[MapScale] = None) -> np.ndarray:
    """HxW float map -> HxWx3 uint8 BGR (JET): in the artifact's units with a MapScale, else over
    the map's own range."""
    if scale is not None:
        return colorize_levels(scale.levels(amap))
    m = np.nan_to_num(amap.astype(np.float32))
    lo, hi = float(m.min()), float(m.max())
    norm = (m - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(m)
    return cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_JET)


class Overlay:
    """Draws on a copy of the frame; the frame the engine scored is never touched."""

    def __init__(self, threshold: float, preprocess, normal_ref: Optional[float] = None, map_scale: Optional[MapScale] = None):
        self.threshold = float(threshold)
        self.preprocess = preprocess
        self.normal_ref = normal_ref
        self.map_scale = map_scale

    def heatmap_on(self, frame: np.ndarray, amap: np.ndarray, score: float, roi: Optional[Roi]) -> None:
        x, y, w, h = roi if roi else (0, 0, frame.shape[1], frame.shape[0])
        region = frame[y : y + h, x : x + w]
        color = colorize(self.preprocess.resize_map(amap, region.shape[:2]), self.map_scale)
        a = heatmap_alpha(score, self.threshold, self.normal_ref)
        cv2.addWeighted(color, a, region, 1.0 - a, 0.0, dst=region)

    def render(self, frame: np.ndarray, score: float, anomaly: bool, amap: Optional[np.ndarray] = None,
               roi: Optional[Roi] = None, fps: Optional[float] = None) -> np.ndarray:
        out = frame.copy()
        if amap is not None:
            self.heatmap_on(out, amap, score, roi)
        fh, fw = out.shape[:2]
        scale = max(0.4, min(fw, fh) / 720.0)
        thick = max(1, int(round(2 * scale)))
        if roi:
            x, y, w, h = roi
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), ROI_COLOR, thick)
        color = NG_COLOR if anomaly else OK_COLOR
        label = "NG" if anomaly else "OK"
        text = f"{label}  {score:.3g} / {self.threshold:.3g}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        pad = int(8 * scale)
        cv2.rectangle(out, (0, 0), (tw + 2 * pad, th + base + 2 * pad), color, -1)
        cv2.putText(out, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        if fps is not None:
            ftxt = f"{fps:.1f} FPS"
            (fw_, _), fbase = cv2.getTextSize(ftxt, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            org = (max(0, fw - fw_ - pad), fh - pad - fbase)  # bottom right: clear of the banner on small frames
            cv2.putText(out, ftxt, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick + 2, cv2.LINE_AA)
            cv2.putText(out, ftxt, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
        return out
