"""Fit the Gaussian AD model (one pass over the good images, no gradient steps).

    model, meta = fit_gaussian(frames_or_paths)      # what `edgeano train` and the demo share

The Gaussians are fitted on all good images. The threshold is the score that at most 1% of the good
images reach when each is scored by a fit that did not see it (10-fold, deterministic folds).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from edgeano.artifact import score_stats
from edgeano.data.images import read_image, to_bgr8
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.evaluation.metrics import auroc, f1_max, threshold_at_fpr
from edgeano.models.backbones import NORMALIZATION, pretrained
from edgeano.models.gaussian import DEFAULT_BACKBONE, DEFAULT_LEVELS, DEFAULT_POOL, GaussianAD

DEFAULT_SIZE = 224
HOLDOUT_EVERY = 10
FPR = 0.01
GAN_ONLY = ("epochs", "lr", "resume")
report = logging.getLogger(__name__)  # progress and results; the CLI prints them (library code stays CLI-free)

Item = Union[np.ndarray, str, Path]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_preprocess(backbone: str, img_size: int = DEFAULT_SIZE, base: Optional[Preprocess] = None) -> Preprocess:
    """The backbone dictates mean/std (its ImageNet training); size etc. come from `base`."""
    mean, std = NORMALIZATION[backbone]
    if base is None:
        return Preprocess(size=(img_size, img_size), mean=mean, std=std)
    return dataclasses.replace(base, color="RGB", mean=mean, std=std)


@torch.no_grad()
def extract_features(model: GaussianAD, items: Sequence[Item], batch: int = 16, device: str = "cpu",
                     desc: str = "features") -> Tuple[List[torch.Tensor], List[int], List[int]]:
    """Pooled per-level features of BGR frames or image paths. Returns (features per level as
    (n, dim) float64 CPU tensors, indices used, indices skipped as unreadable)."""
    pre = model.preprocess
    chunks: List[List[torch.Tensor]] = []
    used, skipped = [], []
    bar = tqdm(total=len(items), desc=desc, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        for start in range(0, len(items), batch):
            frames, idx = [], []
            for i in range(start, min(start + batch, len(items))):
                it = items[i]
                img = read_image(it) if isinstance(it, (str, Path)) else to_bgr8(np.asarray(it))  # gray/alpha frames too
                if img is None:
                    skipped.append(i)
                else:
                    frames.append(img)
                    idx.append(i)
            if frames:
                x = torch.from_numpy(pre.batch(frames)).to(device)
                chunks.append([f.double().cpu() for f in model.features(x)])
                used.extend(idx)
            bar.update(min(batch, len(items) - start))
    finally:
        bar.close()
    if not chunks:
        return [torch.zeros(0, d, dtype=torch.float64) for d in model.dims], used, skipped
    return [torch.cat([c[l] for c in chunks]) for l in range(len(model.dims))], used, skipped


def fit_gaussian(frames_or_paths: Sequence[Item], preprocess: Optional[Preprocess] = None, backbone: str = DEFAULT_BACKBONE,
                 weights: Optional[str] = None, levels: Sequence[int] = DEFAULT_LEVELS, pool: str = DEFAULT_POOL,
                 img_size: int = DEFAULT_SIZE, batch: int = 16, device: str = "cpu", holdout_every: int = HOLDOUT_EVERY,
                 fpr: float = FPR) -> Tuple[GaussianAD, Dict]:
    """Fit on good images (BGR uint8 frames and/or paths; unreadable paths are skipped and counted).

    Returns the model (eval mode, on `device`) and meta for the checkpoint: threshold, score_stats,
    backbone, backbone_weights, levels, n_train, threshold_folds, n_skipped, shrinkage."""
    items = list(frames_or_paths)
    net, source = pretrained(backbone, weights, num_classes=0)
    model = GaussianAD(make_preprocess(backbone, img_size, preprocess), backbone=backbone, levels=levels, pool=pool,
                       padding=net.padding, bn_eps=net.bn_eps)
    model.backbone.load_state_dict(net.state_dict())
    model = model.to(device).eval()

    feats, used, skipped = extract_features(model, items, batch, device, desc="features (train)")
    n = len(used)
    if n < 3:
        raise EdgeanoError(f"need at least 3 readable good images to fit, got {n}" + (f" ({len(skipped)} unreadable skipped)" if skipped else ""))
    # Threshold from out-of-fold scores: k fits, each scoring the 1/k of the good images it did not
    # see, so every image gets an unbiased normal score (a single held-out tenth of a small folder
    # gave a threshold from 8 images). Fits are cheap: the features are extracted once.
    k = max(2, min(holdout_every, n))
    folds = np.arange(n) % k
    oof = np.empty(n, np.float64)
    with tqdm(total=(k + 1) * len(model.dims), desc=f"fit gaussians ({k}-fold + final)", unit="fit", file=sys.stderr,
              leave=False) as bar, torch.no_grad():
        for j in range(k):
            kept, held = np.flatnonzero(folds != j), np.flatnonzero(folds == j)
            model.fit_gaussians([f[kept] for f in feats], progress=bar)
            oof[held] = model.score_features([f[held].float().to(device) for f in feats]).cpu().numpy()
        shrink = model.fit_gaussians(feats, progress=bar)  # the shipped model: all good images
    held_scores = oof
    method = f"fpr@{fpr:g} out-of-fold normal ({k}-fold, n={n})"
    meta = {
        "threshold": {"value": threshold_at_fpr(held_scores, fpr), "method": method},
        "score_stats": score_stats(held_scores),
        "backbone": backbone,
        "backbone_weights": source,
        "levels": list(model.levels),
        "pool": pool,
        "n_train": n,
        "threshold_folds": k,
        "n_skipped": len(skipped),
        "shrinkage": [round(a, 6) for a in shrink],
    }
    return model, meta


@torch.no_grad()
def score_items(model: GaussianAD, items: Sequence[Item], batch: int = 16, device: str = "cpu", desc: str = "score"):
    """Scores of frames/paths with the fitted model; returns (scores, indices used)."""
    feats, used, _ = extract_features(model, items, batch, device, desc=desc)
    if not used:
        return np.zeros(0, np.float32), used
    return model.score_features([f.float().to(device) for f in feats]).cpu().numpy(), used


def train(model: str = "gaussian", data=None, backbone: str = DEFAULT_BACKBONE, weights=None, img_size=None, epochs=None,
          batch=None, lr=None, device: str = "cpu", resume: bool = False, out="runs", name=None, seed: int = 0,
          contrast=None, **_ignored):
    """`edgeano train --model gaussian`: fit, threshold, (test AUROC), write runs/gaussian/<name>/.
    contrast: "none" (default) or "standardize" (per-image contrast normalisation in the graph)."""
    from edgeano.data.datasets import fingerprint, load_dataset
    from edgeano.models.checkpoint import save_checkpoint
    from edgeano.train.runs import contrast_option, new_run_dir, run_logger, save_config

    given = {"epochs": epochs, "lr": lr, "resume": resume or None}
    bad = [k for k in GAN_ONLY if given[k] is not None]
    if bad:
        raise EdgeanoError(f"--{bad[0]} is a GANomaly option; the Gaussian model is fitted in one pass (drop it)")
    img_size = int(img_size or DEFAULT_SIZE)
    if img_size < 32:
        raise EdgeanoError(f"--img-size {img_size} is too small for the backbone (use >= 32; default {DEFAULT_SIZE})")
    contrast = contrast_option(contrast)
    batch = int(batch or 16)
    if batch < 1:
        raise EdgeanoError("--batch must be >= 1")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeanoError(f"--device {device}: CUDA is not available here; use --device cpu")
    seed_everything(seed)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))

    ds = load_dataset(data)
    if not ds.train:
        raise EdgeanoError(f"no training images in {data} (expected train/good/ or images in the folder)")
    report.info(ds.summary())
    base = Preprocess(size=(img_size, img_size), contrast=contrast)  # make_preprocess sets the backbone's mean/std
    gmodel, meta = fit_gaussian(ds.train, base, backbone=backbone, weights=weights, img_size=img_size, batch=batch, device=device)
    if meta["n_skipped"]:
        report.warning(f"skipped {meta['n_skipped']} unreadable training image(s)")
    meta["train_fingerprint"] = fingerprint(ds.train)

    if ds.has_anomalies:
        scores, used = score_items(gmodel, [t.path for t in ds.test], batch, device, desc="score (test)")
        labels = np.array([ds.test[i].label for i in used])
        meta["test_auroc"] = auroc(labels, scores)
        meta["threshold"]["f1_max"] = f1_max(labels, scores)["threshold"]

    try:
        run_dir = new_run_dir(out, "gaussian", name)
    except FileExistsError as e:
        raise EdgeanoError(f"run folder {e} already exists and is not empty; pick another --name")
    log = run_logger(run_dir)
    log.info("data %s", ds.summary())
    log.info("backbone %s weights %s levels %s size %d", backbone, meta["backbone_weights"], meta["levels"], img_size)
    log.info("fitted on %d images (%d-fold out-of-fold scores for the threshold), %d unreadable skipped; shrinkage %s",
             meta["n_train"], meta["threshold_folds"], meta["n_skipped"], meta["shrinkage"])
    log.info("threshold %.6g (%s); out-of-fold score stats %s", meta["threshold"]["value"], meta["threshold"]["method"], meta["score_stats"])
    ckpt = save_checkpoint(run_dir / "weights" / "best.pt", gmodel, meta)
    save_config(run_dir, {"model": "gaussian", "data": str(data), "backbone": backbone, "weights": weights, "img_size": img_size,
                          "contrast": gmodel.preprocess.contrast, "batch": batch, "device": device, "seed": seed, **gmodel.config()})
    msg = f"threshold {meta['threshold']['value']:.4g} ({meta['threshold']['method']})"
    if "test_auroc" in meta:
        msg += f"; test image AUROC {meta['test_auroc']:.4f}"
        log.info("test image AUROC %.4f, F1-max threshold %.6g", meta["test_auroc"], meta["threshold"]["f1_max"])
    report.info(msg)
    report.info(f"wrote {ckpt}")
    if ds.test:
        report.info(f"next: edgeano eval --model {ckpt} --data {data}")
    else:
        report.info(f"next: edgeano export --model {ckpt}")
    return ckpt
