"""Fit the Gaussian AD model (one pass over the good images, no gradient steps).

    model, meta = fit_gaussian(frames_or_paths)      # what `edgeano train` and the demo share

One backbone pass over the good images (and over synthetic-defect copies of some of them) gives
the pooled features of the Gaussian levels and the patch grid of the map levels. Everything the
artifact states is measured out of fold (edgeano.train.gaussian_map): k fits, each scoring the
1/k of the good images it did not see and their synthetic-defect copies; the shipped Gaussians
are fitted on all good images. The threshold is the score that at most 1 % of the good images
reach out of fold; the synthetic copies give the estimated detection quality reported at the end
(image AUROC, pixel AUROC, AUPRO), for users without defect images.

Defaults (levels, map levels, memory size, map weight) were chosen by that protocol on good images
only; docs/benchmarks/gaussian_map.md has the numbers.
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

from edgeano.data.images import read_image, to_bgr8
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.evaluation.synthetic import resize_mask, synthesize
from edgeano.models.backbones import NORMALIZATION, pretrained
from edgeano.models.gaussian import DEFAULT_BACKBONE, DEFAULT_LEVELS, DEFAULT_POOL, GaussianAD
from edgeano.train.gaussian_map import (Features, calibrate, finalise, memory_slots, out_of_fold,
                                        synthetic_sources)

DEFAULT_SIZE = 224
DEFAULT_MAP_LEVELS = (4, 5, 6)  # chosen by the synthetic-defect protocol (docs/benchmarks/gaussian_map.md)
DEFAULT_MEMORY = 1024
DEFAULT_MAP_WEIGHT = 1.0
FOLDS = 5
SYNTHETIC = 160  # good images that get a synthetic-defect copy for the estimate
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


def _frame(it: Item) -> Optional[np.ndarray]:
    return read_image(it) if isinstance(it, (str, Path)) else to_bgr8(np.asarray(it))  # gray/alpha frames too


class _FeatureGraph(torch.nn.Module):
    """What the fitting reads from one backbone pass: the pooled vectors, then the patch grid."""

    def __init__(self, model: GaussianAD):
        super().__init__()
        self.model = model

    def forward(self, x):
        maps = self.model.backbone_maps(x)
        out = self.model.pooled(maps)
        return tuple(out + ([self.model.patch_map.patches(maps)] if self.model.patch_map is not None else []))


class FeatureRunner:
    """x (N, C, H, W) float32 -> [pooled per level..., patches]: ONNX Runtime on CPU (the backbone's
    depthwise convolutions run ~3x faster there than in eager PyTorch, and the fit is ~all backbone
    time), PyTorch on a GPU or where the export fails."""

    def __init__(self, model: GaussianAD, device: str = "cpu"):
        self.graph, self.device, self.session = _FeatureGraph(model).eval(), device, None
        if device == "cpu":
            try:
                self.session = _ort_session(self.graph, model.preprocess.input_shape)
            except Exception as e:  # noqa: BLE001 - any export/ORT failure: the PyTorch path still works
                report.warning(f"feature extraction on PyTorch (ONNX Runtime path failed: {type(e).__name__}: {e})")

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> List[torch.Tensor]:
        if self.session is not None:
            return [torch.from_numpy(o) for o in self.session.run(None, {"input": x})]
        return [t.cpu() for t in self.graph(torch.from_numpy(x).to(self.device))]


def _ort_session(graph: torch.nn.Module, input_shape):
    import io
    import warnings

    import onnxruntime as ort

    buf = io.BytesIO()
    names = [f"out{i}" for i in range(len(graph(torch.zeros(1, *input_shape))))]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.zeros(1, *input_shape),), buf, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=names, dynamic_axes={"input": {0: "n"}, **{o: {0: "n"} for o in names}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def extract_features(model: GaussianAD, items: Sequence[Item], batch: int = 4, device: str = "cpu",
                     desc: str = "features", runner: Optional[FeatureRunner] = None) -> Tuple[Features, List[int], List[int]]:
    """One backbone pass over BGR frames or image paths: pooled per-level features (float64) and,
    for a model with a map, the patch grids (float16). Returns (Features, indices used, indices
    skipped as unreadable). Small batches: a batch of 16 at 224 px runs slower per image than one
    of 4 on a CPU (its activations no longer fit the caches)."""
    pre = model.preprocess
    runner = runner or FeatureRunner(model, device)
    n_pooled = len(model.dims)
    pooled: List[List[torch.Tensor]] = []
    patches: List[torch.Tensor] = []
    used, skipped = [], []
    bar = tqdm(total=len(items), desc=desc, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        for start in range(0, len(items), batch):
            frames, idx = [], []
            for i in range(start, min(start + batch, len(items))):
                img = _frame(items[i])
                (skipped if img is None else idx).append(i)
                if img is not None:
                    frames.append(img)
            if frames:
                out = runner(pre.batch(frames))
                pooled.append([f.double() for f in out[:n_pooled]])
                if model.patch_map is not None:
                    patches.append(out[n_pooled].half())
                used.extend(idx)
            bar.update(min(batch, len(items) - start))
    finally:
        bar.close()
    if not pooled:
        return Features([torch.zeros(0, d, dtype=torch.float64) for d in model.dims]), used, skipped
    feats = Features([torch.cat([c[lv] for c in pooled]) for lv in range(n_pooled)], torch.cat(patches) if patches else None)
    return feats, used, skipped


def fit_gaussian(frames_or_paths: Sequence[Item], preprocess: Optional[Preprocess] = None, backbone: str = DEFAULT_BACKBONE,
                 weights: Optional[str] = None, levels: Sequence[int] = DEFAULT_LEVELS, pool: str = DEFAULT_POOL,
                 img_size: int = DEFAULT_SIZE, batch: int = 4, device: str = "cpu", folds: int = FOLDS, fpr: float = FPR,
                 map_levels: Sequence[int] = DEFAULT_MAP_LEVELS, memory: int = DEFAULT_MEMORY,
                 map_weight: float = DEFAULT_MAP_WEIGHT, synthetic: int = SYNTHETIC, seed: int = 0) -> Tuple[GaussianAD, Dict]:
    """Fit on good images (BGR uint8 frames and/or paths; unreadable paths are skipped and counted).
    map_levels=() fits the plain Rippel model (score only, no map).

    Returns the model (eval mode, on CPU) and meta for the checkpoint: threshold, score_stats, map
    (unit, threshold), synthetic (the estimate), backbone, backbone_weights, levels, n_train,
    threshold_folds, n_skipped, shrinkage."""
    items = list(frames_or_paths)
    net, source = pretrained(backbone, weights, num_classes=0)
    pre = make_preprocess(backbone, img_size, preprocess)
    kw = dict(backbone=backbone, levels=levels, pool=pool, padding=net.padding, bn_eps=net.bn_eps)
    # the memory size depends on how many images decode: extract with a placeholder, then build the final model
    model = GaussianAD(pre, map_levels=map_levels, memory_size=1 if map_levels else 0, map_weight=map_weight, **kw)
    model.backbone.load_state_dict(net.state_dict())
    model = model.to(device).eval()

    runner = FeatureRunner(model, device)  # the backbone pass the map and Gaussians are fitted from (one export)
    feats, used, skipped = extract_features(model, items, batch, device, desc="features (train)", runner=runner)
    n = len(used)
    if n < 3:
        raise EdgeanoError(f"need at least 3 readable good images to fit, got {n}" + (f" ({len(skipped)} unreadable skipped)" if skipped else ""))
    if map_levels:
        grid = model.patch_map.grid
        final = GaussianAD(pre, map_levels=map_levels, memory_size=memory_slots(n, grid, memory), map_weight=map_weight, **kw)
        final.backbone.load_state_dict(net.state_dict())
        model = final.eval()
    model = model.cpu()
    src = synthetic_sources(n, synthetic)
    syn = synthesize([_frame(items[used[i]]) for i in src], seed=seed)
    syn_feats = None
    if len(src):
        syn_feats = extract_features(model, syn.images, batch, device, desc="features (synthetic defects)", runner=runner)[0]
    k = max(2, min(folds, n))
    with tqdm(total=k * (len(model.dims) + 1) + len(model.dims), desc=f"fit ({k}-fold + final)", unit="fit", file=sys.stderr,
              leave=False) as bar, torch.no_grad():
        oof = out_of_fold(model, feats, syn_feats, src, k, progress=bar, seed=seed)
        masks = [resize_mask(m, pre.size) for m in syn.masks]
        meta = calibrate(model, oof, fpr, masks, syn.kinds, k)
        shrink = finalise(model, feats, seed=seed * 1000 + k, progress=bar)
    meta.update({
        "backbone": backbone,
        "backbone_weights": source,
        "levels": list(model.levels),
        "pool": pool,
        "n_train": n,
        "threshold_folds": k,
        "n_skipped": len(skipped),
        "shrinkage": [round(a, 6) for a in shrink],
    })
    return model, meta


def map_levels_option(value) -> Tuple[int, ...]:
    """--map: None -> the default levels, "none" -> () (score only), "4,5,6" -> (4, 5, 6); one line on bad input."""
    from edgeano.errors import EXIT_USAGE
    from edgeano.models.backbones import N_LEVELS

    if value is None:
        return tuple(DEFAULT_MAP_LEVELS)
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ()
        try:
            value = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise EdgeanoError(f"--map {value!r}: give backbone levels such as 4,5,6, or none", EXIT_USAGE)
    levels = tuple(int(v) for v in value)
    if not levels or len(set(levels)) != len(levels) or not all(1 <= v < N_LEVELS - 1 for v in levels):
        raise EdgeanoError(f"--map {','.join(map(str, levels))}: levels must be distinct, in 1..{N_LEVELS - 2} "
                           f"(default {','.join(map(str, DEFAULT_MAP_LEVELS))}), or none", EXIT_USAGE)
    return levels


def synthetic_line(est: Dict) -> str:
    """The estimate in one line, for users without defect images."""
    def f(key):
        v = est.get(key)
        return "n/a" if v is None or v != v else f"{v:.3f}"

    return (f"estimated detection quality (synthetic defects on {est['n_defect']} held-out good images, "
            f"{est['n_good']} good): image AUROC {f('image_auroc')}, pixel AUROC {f('pixel_auroc')}, AUPRO {f('aupro')}, "
            f"TPR at the threshold {f('tpr_at_threshold')} (real defects can score higher or lower)")


def train(model: str = "gaussian", data=None, backbone: str = DEFAULT_BACKBONE, weights=None, img_size=None, epochs=None,
          batch=None, lr=None, device: str = "cpu", resume: bool = False, out="runs", name=None, seed: int = 0,
          contrast=None, map_levels=None, **_ignored):
    """`edgeano train --model gaussian`: fit, threshold, map units, synthetic-defect estimate, write
    runs/gaussian/<name>/. contrast: "none" (default) or "standardize" (per-image contrast
    normalisation in the graph). The test split is not scored here: `edgeano eval` does that, on
    any backend (it was 44 % of a training run)."""
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
    map_levels = map_levels_option(map_levels)
    batch = int(batch or 4)
    if batch < 1:
        raise EdgeanoError("--batch must be >= 1")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeanoError(f"--device {device}: CUDA is not available here; use --device cpu")
    seed_everything(seed)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))

    ds = load_dataset(data)
    if not ds.train:
        raise EdgeanoError(f"no training images in {data} (expected train/good/ or images in the folder)")
    # before the fit: a taken --name must fail in a second, not after minutes (a folder left without a
    # checkpoint by a failed fit is reused by the next run of that name, see runs.new_run_dir)
    try:
        run_dir = new_run_dir(out, "gaussian", name)
    except FileExistsError as e:
        raise EdgeanoError(f"run folder {e} already exists and is not empty; pick another --name")
    report.info(ds.summary())
    base = Preprocess(size=(img_size, img_size), contrast=contrast)  # make_preprocess sets the backbone's mean/std
    gmodel, meta = fit_gaussian(ds.train, base, backbone=backbone, weights=weights, img_size=img_size, batch=batch, device=device,
                                map_levels=map_levels, seed=seed)
    if meta["n_skipped"]:
        report.warning(f"skipped {meta['n_skipped']} unreadable training image(s)")
    meta["train_fingerprint"] = fingerprint(ds.train)

    log = run_logger(run_dir)
    log.info("data %s", ds.summary())
    log.info("backbone %s weights %s levels %s size %d", backbone, meta["backbone_weights"], meta["levels"], img_size)
    log.info("fitted on %d images (%d-fold out-of-fold scores for the threshold), %d unreadable skipped; shrinkage %s",
             meta["n_train"], meta["threshold_folds"], meta["n_skipped"], meta["shrinkage"])
    log.info("threshold %.6g (%s); out-of-fold score stats %s", meta["threshold"]["value"], meta["threshold"]["method"], meta["score_stats"])
    ckpt = save_checkpoint(run_dir / "weights" / "best.pt", gmodel, meta)
    save_config(run_dir, {"model": "gaussian", "data": str(data), "backbone": backbone, "weights": weights, "img_size": img_size,
                          "contrast": gmodel.preprocess.contrast, "batch": batch, "device": device, "seed": seed, **gmodel.config()})
    if "map" in meta:
        log.info("map unit %.4g, map threshold %.4g (%s)", meta["map"]["unit"], meta["map"]["threshold"], meta["map"]["method"])
    report.info(f"threshold {meta['threshold']['value']:.4g} ({meta['threshold']['method']})")
    if "synthetic" in meta:
        line = synthetic_line(meta["synthetic"])
        log.info("%s", line)
        report.info(line)
    report.info(f"wrote {ckpt}")
    if ds.test:
        report.info(f"next: edgeano eval --model {ckpt} --data {data}")
    else:
        report.info(f"next: edgeano export --model {ckpt}")
    return ckpt
