"""Detection quality estimated from good images only: synthetic defects with known masks.

Most users have a folder of good parts and few or no defect images, yet they need a number to
choose a model, a checkpoint or a setting by, and a rough idea of what the detector will catch.
The protocol: score good images the model did not see while fitting (a held-out fold), and
defective copies of the same images made here, where the mask of every defect is known:

    patch    a patch of another good image, zoomed and rotated, pasted in an irregular shape
    scratch  a thin curved line, darker or brighter than the part
    blob     an irregular region whose texture is lost (blurred), shifted in brightness or noisy
    spot     a small round dark or bright spot with a soft edge (a pore, a blowhole, dust)

Sizes are drawn log-uniformly from 0.1 % to 4 % of the image area (a real defect mask is often
under 1 %); every defect is deterministic for (seed, image index), whatever the batching.
`evaluate_synthetic` scores both sets with any scorer (an `Engine` or a torch `AnomalyModel`)
and returns image AUROC, and pixel AUROC / AUPRO where the scorer has an anomaly map.

Synthetic defects are a proxy: they rank settings and checkpoints, and flag a detector that
cannot see local damage at all; the figure on real defects can be higher or lower.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from edgeano.evaluation.metrics import aupro, auroc, pixel_auroc

KINDS = ("patch", "scratch", "blob", "spot")
AREA_RANGE = (0.001, 0.04)  # fraction of the image a defect covers, drawn log-uniformly


@dataclass
class SyntheticSet:
    images: List[np.ndarray] = field(default_factory=list)  # defective BGR uint8 copies
    masks: List[np.ndarray] = field(default_factory=list)  # uint8 {0, 1}, each the size of its image
    kinds: List[str] = field(default_factory=list)
    sources: List[int] = field(default_factory=list)  # index of the good image each one was made from

    def __len__(self) -> int:
        return len(self.images)


def synthesize(good: Sequence[np.ndarray], seed: int = 0, kinds: Sequence[str] = KINDS,
               area_range=AREA_RANGE) -> SyntheticSet:
    """One defective copy of every good BGR uint8 image (kinds in turn: image i gets
    kinds[i % len(kinds)]). Pasted patches come from the other images of `good`. area_range: the
    fraction of the image a patch, blob or spot covers (log-uniform)."""
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown defect kind(s) {bad}; choose from {KINDS}")
    out = SyntheticSet()
    for i, img in enumerate(good):
        rng = np.random.default_rng([int(seed), i])
        kind = kinds[i % len(kinds)]
        donor = good[(i + 1 + int(rng.integers(max(1, len(good) - 1)))) % len(good)] if len(good) > 1 else img
        defect, mask = _make(kind, np.asarray(img), donor, rng, area_range)
        out.images.append(defect)
        out.masks.append(mask)
        out.kinds.append(kind)
        out.sources.append(i)
    return out


def _make(kind: str, img: np.ndarray, donor: np.ndarray, rng: np.random.Generator, area_range=AREA_RANGE):
    h, w = img.shape[:2]
    area = float(np.exp(rng.uniform(*np.log(area_range)))) * h * w
    f = img.astype(np.float32)
    if kind == "spot":
        r = max(1.5, np.sqrt(area / np.pi) / 2)  # spots are the small end
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        layer = np.zeros((h, w), np.float32)
        cv2.circle(layer, (int(cx), int(cy)), int(round(r)), 1.0, -1, cv2.LINE_AA)
        mask = layer > 0.5
        layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, r / 4))
        f += (_sign(rng) * rng.uniform(25, 110)) * layer[..., None]
    elif kind == "scratch":
        layer, mask = _scratch(h, w, rng)
        f += (_sign(rng) * rng.uniform(25, 90)) * layer[..., None]
    else:
        mask = _blob(h, w, area, rng)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[..., None]
        if kind == "patch":
            fill = _donor_texture(donor, h, w, rng)
        else:
            fill = _lost_texture(f, rng)
        f = f * (1 - soft) + fill * soft
    return np.clip(f, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def _sign(rng) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _scratch(h: int, w: int, rng):
    """A smooth random walk, 15-50 % of the image side long, 1-3 px wide (at ~250 px)."""
    side = min(h, w)
    length = rng.uniform(0.15, 0.5) * side
    steps = 24
    x, y = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    angle = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, 0.15, steps).cumsum()
    pts = []
    for t in turn:
        pts.append((x, y))
        x = float(np.clip(x + np.cos(angle + t) * length / steps, 0, w - 1))
        y = float(np.clip(y + np.sin(angle + t) * length / steps, 0, h - 1))
    thick = max(1, int(round(rng.uniform(0.004, 0.012) * side)))
    layer = np.zeros((h, w), np.float32)
    cv2.polylines(layer, [np.round(np.array(pts) * 16).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(layer, (0, 0), 0.6), layer > 0.3


def _blob(h: int, w: int, area: float, rng) -> np.ndarray:
    """An irregular region of about `area` pixels: smoothed noise in a window, thresholded."""
    s = int(np.clip(np.sqrt(area) * 1.6, 4, min(h, w)))
    noise = cv2.GaussianBlur(rng.random((s, s)).astype(np.float32), (0, 0), max(1.0, s / 8))
    yy, xx = np.mgrid[:s, :s]
    falloff = 1 - ((yy - s / 2) ** 2 + (xx - s / 2) ** 2) / (s / 2) ** 2  # keeps the shape inside its window
    v = (noise - noise.mean()) / (noise.std() + 1e-6) + 1.5 * falloff  # noise shapes it, the falloff keeps it whole
    patch = v >= np.quantile(v, 1 - min(0.95, area / (s * s)))
    mask = np.zeros((h, w), bool)
    y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    mask[y0 : y0 + s, x0 : x0 + s] = patch
    return mask


def _donor_texture(donor: np.ndarray, h: int, w: int, rng) -> np.ndarray:
    """The donor image, zoomed (x0.5-2) and rotated, resized to (h, w): a foreign texture."""
    d = cv2.resize(np.asarray(donor), (w, h), interpolation=cv2.INTER_AREA)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(0, 360), float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))
    return cv2.warpAffine(d, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)


def _lost_texture(f: np.ndarray, rng) -> np.ndarray:
    """The image itself with its texture blurred away, and shifted in brightness or noisy."""
    out = cv2.GaussianBlur(f, (0, 0), rng.uniform(2, 5))
    if rng.random() < 0.5:
        return out + _sign(rng) * rng.uniform(15, 60)
    return out + rng.normal(0, rng.uniform(10, 30), f.shape[:2])[..., None].astype(np.float32)


# -- scoring --------------------------------------------------------------------------------------

def as_engine(scorer):
    """An Engine as is; a torch AnomalyModel wrapped in one (PyTorch runner, no threshold)."""
    if hasattr(scorer, "score") and hasattr(scorer, "preprocess") and hasattr(scorer, "threshold"):
        return scorer
    from edgeano.models.runner import TorchRunner  # torch only on this path
    from edgeano.runtime.engine import Engine

    meta = {"input": scorer.preprocess.to_dict(), "threshold": {"value": float("inf"), "method": "none"}}
    return Engine(TorchRunner(scorer), meta)


def score_frames(engine, frames: Sequence[np.ndarray], batch: int = 16):
    """(scores (N,), maps (N, H, W) or None) of BGR frames, `batch` at a time."""
    scores, maps = [], []
    for i in range(0, len(frames), batch):
        res = engine.score(frames[i : i + batch])
        scores.append(res.scores)
        if res.maps is not None:
            maps.append(res.maps.astype(np.float32))
    return np.concatenate(scores).astype(np.float64), (np.concatenate(maps) if maps else None)


def evaluate_synthetic(scorer, good: Sequence[np.ndarray], seed: int = 0, batch: int = 16,
                       kinds: Sequence[str] = KINDS) -> Dict:
    """Score held-out good frames and their synthetic-defect copies with `scorer` (an Engine, or a
    torch AnomalyModel); returns synthetic_metrics(...) (image AUROC, pixel AUROC and AUPRO when
    the scorer outputs a map, per kind, at the scorer's threshold). `good` must be images the
    scorer was not fitted on, or the estimate is optimistic."""
    if len(good) < 2:
        raise ValueError("need at least 2 held-out good images for the synthetic-defect estimate")
    engine = as_engine(scorer)
    syn = synthesize(good, seed, kinds)
    gs, gm = score_frames(engine, list(good), batch)
    ds, dm = score_frames(engine, syn.images, batch)
    masks = [resize_mask(m, engine.preprocess.size) for m in syn.masks] if dm is not None else None
    return dict(synthetic_metrics(gs, ds, syn.kinds, gm, dm, masks, engine.threshold), seed=int(seed))


def resize_mask(mask: np.ndarray, size_hw) -> np.ndarray:
    """A mask to the map's (H, W), nearest; a defect thinner than a map pixel keeps its pixels."""
    h, w = int(size_hw[0]), int(size_hw[1])
    m = np.asarray(mask) > 0
    if m.shape == (h, w):
        return m.astype(np.uint8)
    out = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    if m.any() and not out.any():
        out = (cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    return out


def synthetic_metrics(good_scores, defect_scores, kinds: Sequence[str], good_maps=None, defect_maps=None,
                      masks=None, threshold: Optional[float] = None) -> Dict:
    """Image AUROC (held-out good vs synthetic defects), per kind, TPR/FPR at `threshold`, and with
    maps + masks (at map resolution) pixel AUROC and AUPRO over all good and defect pixels."""
    gs, ds = np.asarray(good_scores, np.float64), np.asarray(defect_scores, np.float64)
    labels = np.r_[np.zeros(gs.size), np.ones(ds.size)]
    kinds = np.asarray(kinds)
    res: Dict = {"n_good": int(gs.size), "n_defect": int(ds.size), "image_auroc": auroc(labels, np.r_[gs, ds]),
                 "per_kind": {k: auroc(np.r_[np.zeros(gs.size), np.ones((kinds == k).sum())], np.r_[gs, ds[kinds == k]])
                              for k in dict.fromkeys(kinds.tolist())}}
    if threshold is not None and np.isfinite(threshold):
        res["fpr_at_threshold"] = float((gs >= threshold).mean())
        res["tpr_at_threshold"] = float((ds >= threshold).mean())
    if good_maps is not None and defect_maps is not None and masks is not None:
        all_maps = np.concatenate([np.asarray(good_maps, np.float32), np.asarray(defect_maps, np.float32)])
        all_masks = np.concatenate([np.zeros(np.shape(good_maps), np.uint8), np.asarray(masks, np.uint8)])
        res["pixel_auroc"] = pixel_auroc(all_masks, all_maps)
        res["aupro"] = aupro(all_masks, all_maps)
    return res
