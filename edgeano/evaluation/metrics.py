"""Metrics in numpy only (no sklearn): ROC/AUROC with ties, F1-max, FPR thresholds; pixel AUROC and
AUPRO (per-region overlap, as in MVTec AD) for anomaly maps against ground-truth masks."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np


def roc_curve(labels, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds (descending), one point per distinct score, like sklearn's."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.where(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tps / P]
    fpr = np.r_[0.0, fps / N]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def auroc(labels, scores) -> float:
    y = np.asarray(labels).astype(bool)
    if y.all() or (~y).all():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, scores)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def f1_max(labels, scores) -> Dict[str, float]:
    """Best F1 over thresholds `score >= t`; returns f1, threshold, precision, recall."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.where(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[distinct].astype(np.float64)
    fp = (distinct + 1) - tp
    P = max(y.sum(), 1)
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / P
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    i = int(np.argmax(f1))
    return {"f1": float(f1[i]), "threshold": float(s[distinct[i]]), "precision": float(prec[i]), "recall": float(rec[i])}


def threshold_at_fpr(normal_scores, fpr: float = 0.01) -> float:
    """Smallest threshold t such that at most `fpr` of these normal scores are >= t... rounded to
    the (1 - fpr) quantile, nudged just above it so the quantile score itself is normal."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no normal scores to set a threshold from")
    q = float(np.quantile(s, 1.0 - fpr, method="higher"))
    return float(np.nextafter(q, np.inf))


def rank_correlation(a, b) -> float:
    """Spearman's rho (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="mergesort")
        r = np.empty_like(order, dtype=np.float64)
        r[order] = np.arange(x.size)
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _curve_desc(scores: np.ndarray, pos_w: np.ndarray, neg_w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) = cumulative negative and positive weight over thresholds `score >= t`, t descending
    through the distinct scores, starting at (0, 0). One sort; ties count together."""
    order = np.argsort(-scores)  # ties are summed together below, so their order does not matter
    s = scores[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    x = np.r_[0.0, np.cumsum(neg_w[order], dtype=np.float64)[distinct]]
    y = np.r_[0.0, np.cumsum(pos_w[order], dtype=np.float64)[distinct]]
    return x, y


def _trapezoid(x: np.ndarray, y: np.ndarray, x_max: Optional[float] = None) -> float:
    """Area under y(x) (x ascending) from 0 to x_max, interpolating y at x_max."""
    if x_max is not None:
        i = int(np.searchsorted(x, x_max, side="right"))
        if i < x.size:
            y_end = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1]) if x[i] > x[i - 1] else y[i - 1]
            x, y = np.r_[x[:i], x_max], np.r_[y[:i], y_end]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def pixel_auroc(masks, maps) -> float:
    """AUROC over every pixel of every image: mask > 0 is a defect pixel, the map value its score.
    masks and maps: (N, H, W) of equal shape (masks at the map's resolution)."""
    y = (np.asarray(masks) > 0).reshape(-1)
    s = np.asarray(maps, dtype=np.float32).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"masks {np.shape(masks)} and maps {np.shape(maps)} differ in shape")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    fpr, tpr = _curve_desc(s, y / n_pos, ~y / (y.size - n_pos))
    return _trapezoid(fpr, tpr)


def region_labels(masks) -> Tuple[np.ndarray, int]:
    """Connected defect regions (8-connected, as MVTec AD's evaluation) numbered 1..R over all
    images: (labels (N, H, W) int32, R)."""
    import cv2

    m = np.asarray(masks) > 0
    out = np.zeros(m.shape, np.int32)
    total = 0
    for i in range(m.shape[0]):
        if m[i].any():
            n, lab = cv2.connectedComponents(m[i].astype(np.uint8), connectivity=8)
            out[i] = np.where(lab > 0, lab + total, 0)
            total += n - 1
    return out, total


def aupro(masks, maps, max_fpr: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, divided by `max_fpr` (MVTec AD's
    AUPRO, 1.0 = perfect): at each threshold, PRO is the mean over defect regions of the fraction
    of the region's pixels at or above it, FPR the fraction of defect-free pixels at or above it."""
    regions, n_regions = region_labels(masks)
    s = np.asarray(maps, dtype=np.float32).reshape(-1)
    r = regions.reshape(-1)
    if r.shape != s.shape:
        raise ValueError(f"masks {np.shape(masks)} and maps {np.shape(maps)} differ in shape")
    normal = r == 0
    if n_regions == 0 or normal.all() or not normal.any():
        return float("nan")
    sizes = np.bincount(r, minlength=n_regions + 1).astype(np.float64)
    # each defect pixel carries 1 / (its region's size * number of regions): the cumulative sum over
    # a threshold is then the mean per-region overlap
    pos_w = np.where(normal, 0.0, 1.0 / (sizes[r] * n_regions))
    fpr, pro = _curve_desc(s, pos_w, normal / normal.sum())
    return _trapezoid(fpr, pro, max_fpr) / max_fpr


def rates_at_threshold(labels, scores, threshold: float) -> Dict[str, Optional[float]]:
    """TPR (defects flagged) and FPR (good images flagged) for `score >= threshold`."""
    y = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores, np.float64) >= threshold
    return {"tpr": float(flagged[y].mean()) if y.any() else None,
            "fpr": float(flagged[~y].mean()) if (~y).any() else None}
