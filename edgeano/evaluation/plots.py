"""Pictures people would rather see than read: ROC curve, score histogram and heatmap overlays,
drawn with OpenCV (no matplotlib on devices). Written atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from edgeano.fileio import atomic_path
from edgeano.evaluation.metrics import roc_curve
from edgeano.stream.maps import RED_LEVEL, MapScale, colorize_levels

W, H, M = 520, 420, 50  # canvas and margin
GREEN, RED, BLUE, GRAY, BLACK = (60, 160, 60), (40, 40, 210), (200, 120, 30), (190, 190, 190), (20, 20, 20)
OK_GREEN, NG_RED = (50, 150, 50), (40, 40, 200)  # caption bars of the overlay grid


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


def map_colours(map_meta: Optional[dict], good_maps: Optional[np.ndarray]) -> Tuple[Callable, str]:
    """(levels, caption): raw map -> JET colour level, the camera overlay's rule
    (`edgeano.stream.maps.MapScale`: blue to cyan up to the artifact's map unit, red at its map
    threshold) when the artifact has map units, else this evaluation's good images (median ->
    99.9th percentile, linear to red), never per-image min-max."""
    if map_meta:
        scale = MapScale.from_meta({"map": map_meta})
        return scale.levels, f"artifact map units (unit {scale.unit:.3g}, red at the map threshold {scale.threshold:.3g})"
    if good_maps is not None and good_maps.size:
        sample = np.asarray(good_maps[:, ::4, ::4], np.float32)
        lo, hi = (float(v) for v in np.percentile(sample, [50, 99.9]))
        hi = hi if hi > lo else lo + 1.0
        caption = f"good images of this eval, no map units in the artifact (blue {lo:.3g} -> red {hi:.3g})"
    else:
        lo, hi, caption = 0.0, 1.0, "no map units (blue 0 -> red 1)"
    return (lambda m: np.clip((np.asarray(m, np.float32) - lo) / (hi - lo), 0, 1) * RED_LEVEL), caption


def heat_tile(bgr: np.ndarray, amap: np.ndarray, levels: Callable, mask: Optional[np.ndarray] = None,
              alpha: float = 0.45, min_side: int = 0) -> np.ndarray:
    """The image at the map's size (at least `min_side`) with the map over it in fixed units
    (`levels` from map_colours: a good image stays cold) and the mask's contour in white."""
    h, w = amap.shape
    k = max(1.0, min_side / min(h, w))
    if k > 1:  # small networks (GANomaly at 32 px): draw big enough to see
        h, w = int(round(h * k)), int(round(w * k))
        amap = cv2.resize(np.asarray(amap, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        mask = None if mask is None else cv2.resize(np.asarray(mask, np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    img = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    heat = colorize_levels(levels(np.asarray(amap, np.float32)))
    out = cv2.addWeighted(heat, alpha, img, 1 - alpha, 0)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def overlay_grid_png(res: dict, path, map_meta: Optional[dict] = None, per_row: int = 5) -> Path:
    """Three rows of heatmap overlays from an evaluation: the highest-scored good images (would-be
    false alarms), the lowest-scored defects (misses) and the highest-scored defects, each
    captioned with its score against the threshold; ground-truth contours in white."""
    from edgeano.data.images import read_image

    scores, labels = np.asarray(res["_scores"]), np.asarray(res["_labels"])
    maps, masks = res["_maps"], res.get("_masks")
    levels, caption = map_colours(map_meta, maps[labels == 0] if (labels == 0).any() else None)
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    rows = [("highest-scored good", good[np.argsort(-scores[good], kind="stable")][:per_row]),
            ("lowest-scored defects", bad[np.argsort(scores[bad], kind="stable")][:per_row]),
            ("highest-scored defects", bad[np.argsort(-scores[bad], kind="stable")][:per_row])]
    side = max(160, min(maps.shape[1:]))
    h, w = side * maps.shape[1] // min(maps.shape[1:]), side * maps.shape[2] // min(maps.shape[1:])
    cap = 22
    canvas = []
    for title, idx in rows:
        if not len(idx):
            continue
        band = np.full((cap + 4, per_row * (w + 4), 3), 255, np.uint8)
        cv2.putText(band, title, (4, cap - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, BLACK, 1, cv2.LINE_AA)
        tiles = []
        for i in idx:
            img = read_image(res["_paths"][i])
            img = np.zeros((h, w, 3), np.uint8) if img is None else img
            tile = heat_tile(img, np.asarray(maps[i], np.float32), levels, None if masks is None else masks[i], min_side=side)
            ng = scores[i] >= res["threshold"]
            label = f"{'NG' if ng else 'OK'} {scores[i]:.3g}"
            cv2.rectangle(tile, (0, 0), (w - 1, 16), NG_RED if ng else OK_GREEN, -1)
            cv2.putText(tile, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
        tiles += [np.full_like(tiles[0], 255)] * (per_row - len(tiles))
        canvas += [band, np.hstack(tiles)]
    width = max(W, canvas[0].shape[1])
    canvas = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0)), constant_values=255) for c in canvas]
    foot = np.full((cap * 2, width, 3), 255, np.uint8)
    cv2.putText(foot, f"score threshold {res['threshold']:.4g} ({res['backend']}); white: ground-truth mask", (4, 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.42, BLACK, 1, cv2.LINE_AA)
    cv2.putText(foot, f"heatmap: {caption}", (4, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.42, BLACK, 1, cv2.LINE_AA)
    return _save(np.vstack(canvas + [foot]), path)
