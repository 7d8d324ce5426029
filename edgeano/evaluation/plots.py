"""Pictures people would rather see than read: ROC curve and score histogram, drawn with OpenCV
(no matplotlib on devices). Written atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edgeano.fileio import atomic_path
from edgeano.evaluation.metrics import roc_curve

W, H, M = 520, 420, 50  # canvas and margin
GREEN, RED, BLUE, GRAY, BLACK = (60, 160, 60), (40, 40, 210), (200, 120, 30), (190, 190, 190), (20, 20, 20)


def _canvas(title: str) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    cv2.putText(img, title, (M, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.55, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (M, M), (W - M // 2, H - M), BLACK, 1)
    return img


def _xy(x: float, y: float):
    return int(M + x * (W - 1.5 * M)), int(H - M - y * (H - 2 * M))


def _save(img: np.ndarray, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", img)
        tmp.write_bytes(buf.tobytes())
    return path


def roc_png(labels, scores, path, title: str = "ROC") -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    img = _canvas(title)
    cv2.line(img, _xy(0, 0), _xy(1, 1), GRAY, 1, cv2.LINE_AA)
    pts = np.array([_xy(x, y) for x, y in zip(fpr, tpr)], np.int32)
    cv2.polylines(img, [pts], False, BLUE, 2, cv2.LINE_AA)
    cv2.putText(img, "false positive rate", (W // 2 - 70, H - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "TPR", (8, H // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BLACK, 1, cv2.LINE_AA)
    return _save(img, path)


def histogram_png(labels, scores, path, threshold: Optional[float] = None, title: str = "scores", bins: int = 40) -> Path:
    """Normal (green) vs anomalous (red) score histograms, with the threshold as a vertical line."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    has_t = threshold is not None and np.isfinite(threshold)
    # Mahalanobis-type scores span decades: a log axis keeps the normal cluster visible.
    log = bool(s.size and s.min() > 0 and (not has_t or threshold > 0) and s.max() / s.min() > 20)
    if log:
        s = np.log10(s)
        threshold = np.log10(threshold) if has_t else threshold
        title += " (log10 axis)"
    lo, hi = float(np.min(s)), float(np.max(s))
    if has_t:
        lo, hi = min(lo, threshold), max(hi, threshold)
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    hn = np.histogram(s[~y], edges)[0]
    ha = np.histogram(s[y], edges)[0]
    top = max(int(hn.max(initial=0)), int(ha.max(initial=0)), 1)
    img = _canvas(title)
    for counts, colour in ((hn, GREEN), (ha, RED)):
        for i, c in enumerate(counts):
            if c:
                x0, y0 = _xy(i / bins, c / top)
                x1, _ = _xy((i + 1) / bins, 0)
                overlay = img.copy()
                cv2.rectangle(overlay, (x0, y0), (max(x0 + 1, x1 - 1), H - M), colour, -1)
                img = cv2.addWeighted(overlay, 0.55, img, 0.45, 0)
    shown = (lambda v: 10 ** v) if log else (lambda v: v)
    if has_t:
        x, _ = _xy((threshold - lo) / (hi - lo), 0)
        cv2.line(img, (x, M), (x, H - M), BLACK, 1, cv2.LINE_AA)
        cv2.putText(img, f"threshold {shown(threshold):.4g}", (min(x + 4, W - 150), M + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, f"{shown(lo):.4g}", (M - 10, H - M + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, f"{shown(hi):.4g}", (W - M - 30, H - M + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, BLACK, 1, cv2.LINE_AA)
    # legend under the axis: inside the plot it collides with the threshold label or the bars
    cv2.putText(img, "good", (W // 2 - 60, H - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, GREEN, 2, cv2.LINE_AA)
    cv2.putText(img, "defect", (W // 2, H - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, RED, 2, cv2.LINE_AA)
    return _save(img, path)
