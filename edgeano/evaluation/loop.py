"""The evaluation loop: any Engine (PyTorch checkpoint, ONNX Runtime, TensorRT) on an
MVTec-layout test set. Torch-free: the backend is whatever the Engine wraps.

Image level: AUROC, F1-max, per-class AUROC, and the artifact's own operating point
(`tpr_at_threshold`, `fpr_at_threshold`). Pixel level, for models with an anomaly map and test
sets with `ground_truth/` masks: `pixel_auroc` and `aupro` (MVTec AD's PRO to 30 % FPR), with
masks resized to the map's resolution (the network input)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from edgeano.data.datasets import Dataset
from edgeano.data.images import read_image
from edgeano.errors import EdgeanoError
from edgeano.evaluation.metrics import aupro, auroc, f1_max, pixel_auroc, rates_at_threshold
from edgeano.evaluation.synthetic import resize_mask
from edgeano.runtime.engine import Engine


def score_paths(engine: Engine, paths, batch: int = 16, desc: str = "scoring", keep_maps: bool = False):
    """Scores (and maps, float16, when asked and the model has them) for image files; returns
    (scores, maps or None, indices that decoded, skipped paths)."""
    scores: List[float] = []
    maps: List[np.ndarray] = []
    kept: List[int] = []
    skipped = []
    pending, pending_idx = [], []

    def flush():
        if pending:
            res = engine.score(pending)
            scores.extend(res.scores.tolist())
            if keep_maps and res.maps is not None:
                maps.append(res.maps.astype(np.float16))
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
    return np.asarray(scores, np.float64), (np.concatenate(maps) if maps else None), kept, skipped


def evaluate(engine: Engine, ds: Dataset, batch: int = 16) -> Dict:
    """image_auroc, f1_max, threshold (the artifact's) with tpr/fpr_at_threshold, per_class AUROC,
    pixel_auroc / aupro where there are maps and masks, counts, backend."""
    if not ds.test:
        raise EdgeanoError(f"{ds.root}: no test images (need test/good and test/<defect>)")
    items = ds.test
    scores, maps, kept, skipped = score_paths(engine, [t.path for t in items], batch, keep_maps=engine.has_map)
    if len(kept) == 0:
        raise EdgeanoError(f"{ds.root}: none of the {len(items)} test images could be read")
    labels = np.array([items[i].label for i in kept])
    classes = [items[i].defect for i in kept]
    n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
    rates = rates_at_threshold(labels, scores, engine.threshold)
    res = {
        "backend": engine.name,
        "precision": engine.precision,  # what the runner computed in (OpenVINO: pinned f32 or bf16)
        "image_auroc": None,
        "f1_max": None,
        "threshold": engine.threshold,
        "tpr_at_threshold": rates["tpr"],
        "fpr_at_threshold": rates["fpr"],
        "pixel_auroc": None,
        "aupro": None,
        "n_normal": n_norm,
        "n_anomalous": n_anom,
        "n_skipped": len(skipped),
        "per_class": {},
        "_map_meta": engine.meta.get("map"),  # the artifact's map units, for write_plots
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
    masks = _masks([items[i] for i in kept], engine.preprocess.size) if maps is not None else None
    if masks is not None:
        res["n_masks"] = int(sum(items[i].mask is not None for i in kept))
        res["pixel_auroc"] = pixel_auroc(masks, maps)
        res["aupro"] = aupro(masks, maps)
    res["_scores"] = scores.tolist()
    res["_labels"] = labels.tolist()
    res["_paths"] = [str(items[i].path) for i in kept]
    res["_maps"], res["_masks"] = maps, masks
    return res


def _masks(items, size_hw) -> Optional[np.ndarray]:
    """Ground-truth masks at the map's resolution (good images: all zero); None when no defect
    image has one (then pixel metrics would be meaningless)."""
    if not any(t.mask is not None for t in items):
        return None
    out = np.zeros((len(items), int(size_hw[0]), int(size_hw[1])), np.uint8)
    for k, t in enumerate(items):
        if t.mask is not None:
            m = cv2.imread(str(t.mask), cv2.IMREAD_GRAYSCALE)
            if m is not None:
                out[k] = resize_mask(m > 127, size_hw)
    return out


def format_report(res: Dict) -> str:
    def f(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    lines = [
        f"backend      {res['backend']}" + (f", computing in {res['precision']}" if res.get("precision") else ""),
        f"images       {res['n_normal']} good, {res['n_anomalous']} anomalous" + (f", {res['n_skipped']} unreadable skipped" if res["n_skipped"] else ""),
        f"image AUROC  {f(res['image_auroc'])}",
        f"F1-max       {f(res['f1_max'])}" + (f" at score >= {res['f1_max_threshold']:.5g}" if res.get("f1_max_threshold") is not None else ""),
        f"threshold    {res['threshold']:.5g} (artifact): TPR {f(res['tpr_at_threshold'])}, FPR {f(res['fpr_at_threshold'])}",
    ]
    if res.get("pixel_auroc") is not None:
        lines.append(f"pixel AUROC  {f(res['pixel_auroc'])}   AUPRO (30% FPR) {f(res['aupro'])}   ({res['n_masks']} masks)")
    for cls, a in res["per_class"].items():
        lines.append(f"  {cls:<12} AUROC {f(a)}")
    return "\n".join(lines)


def public(res: Dict) -> Dict:
    """The report without the per-image arrays (kept under _keys for plots)."""
    return {k: v for k, v in res.items() if not k.startswith("_")}


def write_plots(res: Dict, folder, stem: str = "eval", map_meta: Optional[Dict] = None) -> List[Path]:
    """Score histogram, ROC, and (models with a map) the heatmap-overlay grid, as PNGs in `folder`.
    map_meta: the artifact's meta["map"] (its units colour the heatmaps; default: the one evaluate
    recorded from the engine it scored with)."""
    from edgeano.evaluation.plots import histogram_png, overlay_grid_png, roc_png

    folder = Path(folder)
    out = [histogram_png(res["_labels"], res["_scores"], folder / f"{stem}_scores.png", res["threshold"], title=f"scores ({res['backend']})")]
    if res["image_auroc"] is not None:
        out.append(roc_png(res["_labels"], res["_scores"], folder / f"{stem}_roc.png", title=f"ROC ({res['backend']}), AUROC {res['image_auroc']:.4f}"))
    if res.get("_maps") is not None:
        out.append(overlay_grid_png(res, folder / f"{stem}_maps.png", map_meta if map_meta is not None else res.get("_map_meta")))
    return out
