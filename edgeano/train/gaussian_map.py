"""Fitting the Gaussian model's patch map and its fused image score, out of fold.

Everything the artifact states about its map and its image score is measured on good images the
fitted parts did not see: the images are split into k folds; for each fold the Gaussians and a
coreset memory are fitted on the other folds and score the held-out fold's images and the
synthetic-defect copies made from them (edgeano.evaluation.synthetic). From those out-of-fold
numbers come the per-position statistics of the patch distances, the fusion units, the image
threshold, the map's units and threshold, and the synthetic detection estimate. The shipped
Gaussians and memory are fitted on all images (a memory of the same size, from the same number
of candidate patches, as each fold's: the out-of-fold distances describe it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from edgeano.artifact import score_stats
from edgeano.evaluation.metrics import threshold_at_fpr
from edgeano.evaluation.synthetic import synthetic_metrics
from edgeano.models.gaussian import GaussianAD
from edgeano.models.patch_map import greedy_coreset

CANDIDATES = 30000  # patches per coreset: a random subsample of the folds' patches, bounds the greedy search
MAP_UNIT_QUANTILE = 99.9  # meta["map"]["unit"]: this percentile of normal pixels
CHUNK = 32  # images per distance / upsampling step (bounds the (chunk, P, M) distance block)
report = logging.getLogger("edgeano.train.gaussian")


@dataclass
class Features:
    """What one backbone pass gives per image: pooled vectors per Gaussian level (float64) and the
    patch grid of the map levels (float16, (n, D, gh, gw)) when the model has a map."""
    pooled: List[torch.Tensor]
    patches: Optional[torch.Tensor] = None

    def take(self, idx) -> "Features":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return Features([f[idx] for f in self.pooled], None if self.patches is None else self.patches[idx])


@dataclass
class OutOfFold:
    """Out-of-fold evidence of the clean images and of the synthetic-defect copies."""
    g: np.ndarray  # global scores, clean
    d: Optional[torch.Tensor] = None  # patch distances (n, gh, gw), clean
    g_syn: np.ndarray = field(default_factory=lambda: np.zeros(0))
    d_syn: Optional[torch.Tensor] = None


def distances(model: GaussianAD, patches: torch.Tensor) -> torch.Tensor:
    """Nearest-memory distances (n, gh, gw) of float16 patch grids, CHUNK images at a time."""
    out = [model.patch_map.distances(patches[i:i + CHUNK].float()) for i in range(0, len(patches), CHUNK)]
    return torch.cat(out) if out else torch.zeros(0, *model.patch_map.grid)


def fit_memory(model: GaussianAD, patches: torch.Tensor, seed: int) -> torch.Tensor:
    """Coreset memory (M, D) from the patches of some images."""
    flat = patches.flatten(2).transpose(1, 2).reshape(-1, patches.shape[1])
    g = torch.Generator().manual_seed(int(seed))
    cand = flat[torch.randperm(len(flat), generator=g)[:CANDIDATES]].float()
    m = min(model.patch_map.memory_size, len(cand))
    return cand[greedy_coreset(cand, m, seed=seed)]


@torch.no_grad()
def out_of_fold(model: GaussianAD, feats: Features, syn: Optional[Features], syn_src: np.ndarray, k: int,
                progress=None, seed: int = 0) -> OutOfFold:
    """k fits, each scoring the held-out fold's clean images and the synthetic copies of them."""
    n = len(feats.pooled[0])
    folds = np.arange(n) % k
    res = OutOfFold(np.empty(n))
    syn_fold = folds[syn_src] if syn is not None else np.zeros(0, int)
    res.g_syn = np.empty(len(syn_fold))
    if model.patch_map is not None:
        res.d = torch.empty(n, *model.patch_map.grid)
        res.d_syn = torch.empty(len(syn_fold), *model.patch_map.grid)
    for j in range(k):
        kept, held, held_syn = np.flatnonzero(folds != j), np.flatnonzero(folds == j), np.flatnonzero(syn_fold == j)
        model.fit_gaussians([f[kept] for f in feats.pooled], progress=progress)
        res.g[held] = model.score_features([f[held].float() for f in feats.pooled]).numpy()
        if len(held_syn):
            res.g_syn[held_syn] = model.score_features([f[held_syn].float() for f in syn.pooled]).numpy()
        if model.patch_map is not None:
            memory = fit_memory(model, feats.patches[kept], seed=seed * 1000 + j)
            model.patch_map.set_memory(memory)
            res.d[held] = distances(model, feats.patches[held])
            if len(held_syn):
                res.d_syn[held_syn] = distances(model, syn.patches[held_syn])
        if progress is not None:
            progress.update(1)
    return res


@torch.no_grad()
def upsampled(model: GaussianAD, d: torch.Tensor):
    """Maps at input resolution for distances d: (per-image max (n,), maps (n, H, W) float16)."""
    maxima, maps = [], []
    for i in range(0, len(d), CHUNK):
        m = model.patch_map.upsample(model.patch_map.normalise(d[i:i + CHUNK]))
        maxima.append(m.amax((1, 2)))
        maps.append(m.half())
    return torch.cat(maxima).double().numpy(), torch.cat(maps)


@torch.no_grad()
def calibrate(model: GaussianAD, oof: OutOfFold, fpr: float, syn_masks=None, syn_kinds=None, k: int = 0) -> Dict:
    """Set the model's per-position statistics and fusion units from out-of-fold normal images;
    return meta: threshold, score_stats, map units/threshold and the synthetic-defect estimate."""
    n = len(oof.g)
    meta: Dict = {}
    if model.patch_map is None:
        scores, syn_scores = oof.g, oof.g_syn
    else:
        pm = model.patch_map
        pm.pos_mean.copy_(oof.d.mean(0))
        pm.pos_inv_std.copy_(1.0 / oof.d.std(0).clamp_min(1e-6))
        mx, maps = upsampled(model, oof.d)
        model.fusion.copy_(torch.tensor([oof.g.std() or 1.0, mx.std() or 1.0, pm.floor()]))
        scores = model.fuse(torch.from_numpy(oof.g), torch.from_numpy(mx)[:, None, None]).numpy()
        pixels = maps[:, ::2, ::2].float().numpy().ravel()
        meta["map"] = {
            "unit": float(np.percentile(pixels, MAP_UNIT_QUANTILE)),
            "threshold": threshold_at_fpr(mx, fpr),
            "method": f"unit: p{MAP_UNIT_QUANTILE:g} of out-of-fold normal pixels; threshold: the map value at most "
                      f"{fpr:g} of out-of-fold normal images reach anywhere ({k}-fold, n={n})",
            "p50": float(np.median(pixels)), "n_images": n, "quantile": MAP_UNIT_QUANTILE,
        }
        syn_scores = None
        if oof.d_syn is not None and len(oof.d_syn):
            smx, smaps = upsampled(model, oof.d_syn)
            syn_scores = model.fuse(torch.from_numpy(oof.g_syn), torch.from_numpy(smx)[:, None, None]).numpy()
    threshold = threshold_at_fpr(scores, fpr)
    meta["threshold"] = {"value": threshold, "method": f"fpr@{fpr:g} out-of-fold normal ({k}-fold, n={n})"}
    meta["score_stats"] = score_stats(scores)
    if syn_scores is not None and len(syn_scores) and syn_kinds is not None:
        if model.patch_map is not None and syn_masks is not None:
            # pixel metrics on as many clean maps as defect ones, every second pixel (an estimate: 4x less sorting)
            clean = np.linspace(0, n - 1, min(n, len(syn_scores))).round().astype(int)
            est = synthetic_metrics(scores, syn_scores, syn_kinds, maps[clean, ::2, ::2].float().numpy(),
                                    smaps[:, ::2, ::2].float().numpy(), np.asarray(syn_masks)[:, ::2, ::2], threshold)
        else:
            est = synthetic_metrics(scores, syn_scores, syn_kinds, threshold=threshold)
        meta["synthetic"] = est
    return meta


def finalise(model: GaussianAD, feats: Features, seed: int, progress=None) -> List[float]:
    """The shipped model: Gaussians and the coreset memory from all good images."""
    shrink = model.fit_gaussians(feats.pooled, progress=progress)
    if model.patch_map is not None:
        model.patch_map.set_memory(fit_memory(model, feats.patches, seed=seed))
    return shrink


def synthetic_sources(n: int, most: int) -> np.ndarray:
    """Indices of the good images that get a synthetic-defect copy: evenly spread, at most `most`."""
    if most <= 0 or n == 0:
        return np.zeros(0, int)
    return np.unique(np.linspace(0, n - 1, min(n, most)).round().astype(int))


def memory_slots(n_images: int, grid: Sequence[int], most: int) -> int:
    """Memory size: `most`, or a quarter of all patches for small data sets (a coreset of every
    patch would memorise the folds and leave nothing to learn from held-out images)."""
    return int(max(1, min(most, n_images * int(np.prod(grid)) // 4)))
