"""Image-level metrics in numpy only (no sklearn): ROC/AUROC with ties, F1-max, FPR thresholds."""

from __future__ import annotations

from typing import Dict, Tuple

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
