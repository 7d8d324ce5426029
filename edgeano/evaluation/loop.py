"""The evaluation loop: any Engine (PyTorch checkpoint, ONNX Runtime, TensorRT) on an
MVTec-layout test set. Torch-free: the backend is whatever the Engine wraps."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from edgeano.data.datasets import Dataset
from edgeano.data.images import read_image
from edgeano.errors import EdgeanoError
from edgeano.evaluation.metrics import auroc, f1_max
from edgeano.runtime.engine import Engine


def score_paths(engine: Engine, paths, batch: int = 16, desc: str = "scoring"):
    """Scores for image files; returns (scores, indices that decoded, skipped paths)."""
    scores: List[float] = []
    kept: List[int] = []
    skipped = []
    pending, pending_idx = [], []

    def flush():
        if pending:
            scores.extend(engine.score(pending).scores.tolist())
            kept.extend(pending_idx)
            pending.clear()
            pending_idx.clear()

    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=0.5)):
        img = read_image(p)
        if img is None:
            skipped.append(p)
            continue
        pending.append(img)
        pending_idx.append(i)
        if len(pending) >= batch:
            flush()
    flush()
    return np.asarray(scores, np.float64), kept, skipped


def evaluate(engine: Engine, ds: Dataset, batch: int = 16) -> Dict:
    """image_auroc, f1_max, threshold (the artifact's), per_class AUROC, counts, backend."""
    if not ds.test:
        raise EdgeanoError(f"{ds.root}: no test images (need test/good and test/<defect>)")
    items = ds.test
    scores, kept, skipped = score_paths(engine, [t.path for t in items], batch)
    if len(kept) == 0:
        raise EdgeanoError(f"{ds.root}: none of the {len(items)} test images could be read")
    labels = np.array([items[i].label for i in kept])
    classes = [items[i].defect for i in kept]
    n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
    res = {
        "backend": engine.name,
        "precision": engine.precision,  # what the runner computed in (OpenVINO: pinned f32 or bf16)
        "image_auroc": None,
        "f1_max": None,
        "threshold": engine.threshold,
        "n_normal": n_norm,
        "n_anomalous": n_anom,
        "n_skipped": len(skipped),
        "per_class": {},
    }
    pred = scores >= engine.threshold
    res["at_threshold"] = {
        "fpr": float(pred[labels == 0].mean()) if n_norm else None,
        "tpr": float(pred[labels == 1].mean()) if n_anom else None,
    }
    if n_norm and n_anom:
        res["image_auroc"] = auroc(labels, scores)
        f1 = f1_max(labels, scores)
        res["f1_max"] = f1["f1"]
        res["f1_max_threshold"] = f1["threshold"]
        good = labels == 0
        for cls in sorted(set(classes) - {"good"}):
            m = np.array([c == cls for c in classes])
            res["per_class"][cls] = auroc(np.r_[np.zeros(good.sum()), np.ones(m.sum())], np.r_[scores[good], scores[m]])
    res["_scores"] = scores.tolist()
    res["_labels"] = labels.tolist()
    return res


def format_report(res: Dict) -> str:
    def f(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    lines = [
        f"backend      {res['backend']}" + (f", computing in {res['precision']}" if res.get("precision") else ""),
        f"images       {res['n_normal']} good, {res['n_anomalous']} anomalous" + (f", {res['n_skipped']} unreadable skipped" if res["n_skipped"] else ""),
        f"image AUROC  {f(res['image_auroc'])}",
        f"F1-max       {f(res['f1_max'])}" + (f" at score >= {res['f1_max_threshold']:.5g}" if res.get("f1_max_threshold") is not None else ""),
        f"threshold    {res['threshold']:.5g} (artifact): FPR {f(res['at_threshold']['fpr'])}, TPR {f(res['at_threshold']['tpr'])}",
    ]
    for cls, a in res["per_class"].items():
        lines.append(f"  {cls:<12} AUROC {f(a)}")
    return "\n".join(lines)


def public(res: Dict) -> Dict:
    """The report without the per-image arrays (kept under _keys for plots)."""
    return {k: v for k, v in res.items() if not k.startswith("_")}


def write_plots(res: Dict, folder, stem: str = "eval") -> Optional[List]:
    from pathlib import Path

    from edgeano.evaluation.plots import histogram_png, roc_png

    folder = Path(folder)
    out = [histogram_png(res["_labels"], res["_scores"], folder / f"{stem}_scores.png", res["threshold"], title=f"scores ({res['backend']})")]
    if res["image_auroc"] is not None:
        out.append(roc_png(res["_labels"], res["_scores"], folder / f"{stem}_roc.png", title=f"ROC ({res['backend']}), AUROC {res['image_auroc']:.4f}"))
    return out
