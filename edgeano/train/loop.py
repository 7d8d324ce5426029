"""`edgeano train` for every learned model except the Gaussian one: one loop, per-model steps.

    RECIPES[model] -> the step class (edgeano.train.adversarial / gan_steps / reconstruction) and the
                      defaults a CPU budget trains stably (docs/benchmarks/models.md measures them)

runs/<model>/<name>/
    weights/last.pt   every epoch, and on Ctrl-C (mid-epoch, resumable exactly with --resume)
    weights/best.pt   the epoch edgeano.train.selection picks without test labels (synthetic defects
                      on the held-out good images)
    metrics.csv       one row per epoch: phase, losses, held-out score mean, synthetic-defect image and
                      pixel AUROC (label-free), test AUROC (a monitor: nothing selects on it)
    config.json, train.log

Every 10th image of train/good is held out (never trained on): it sets the image threshold at
1 % FPR and the anomaly map's normalisation (meta["map"], edgeano.artifact.map_normalisation).

A step is any object with `begin_epoch(epoch) -> phase name` (sets train/eval modes),
`__call__(x in [0, 1]) -> {loss name: float}` (one optimisation step; a "d_reinit" entry counts
discriminator re-initialisations), `state_dict()` and `load_state_dict()` (its optimisers).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from edgeano.evaluation import metrics
from edgeano.artifact import map_normalisation, score_stats
from edgeano.data.datasets import fingerprint, load_dataset
from edgeano.data.images import all_gray, exposure_spread, read_images
from edgeano.data.preprocess import Preprocess, split_every
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.models.checkpoint import read_checkpoint, save_checkpoint
from edgeano.models.dcgan import check_img_size
from edgeano.models.ganomaly import gan_preprocess
from edgeano.models.registry import create
from edgeano.train import adversarial, gan_steps, reconstruction
from edgeano.train.runs import contrast_option, new_run_dir, resume_dir, run_logger, save_config, write_metrics
from edgeano.train.selection import make_selector, synthetic_estimate, synthetic_set
from edgeano.train.state import get_rng, seed_everything, set_rng, to_cpu

report = logging.getLogger(__name__)  # progress and results; the CLI prints them (library code stays CLI-free)
HOLDOUT_EVERY = 10  # every 10th good image -> threshold set
THRESHOLD_FPR = 0.01
BRIGHTNESS_SPREAD = 0.25  # 5th-95th percentile of good-image means beyond this -> contrast "auto" standardises
CONTRAST_AUTO = "auto"


@dataclass(frozen=True)
class Recipe:
    step: Callable  # (model, hparams) -> step
    defaults: Dict  # img_size, epochs, batch, lr + training extras (clip, second_phase); others are model config
    config: tuple = ()  # trainer options that are model constructor arguments (nz, width, loss, blocks, beta)
    phases: tuple = ()  # names of the two phases when `second_phase` splits the epochs


_GAN = {"img_size": 32, "epochs": 60, "batch": 64, "lr": 2e-4}
_AE = {"img_size": 32, "epochs": 60, "batch": 64, "lr": 1e-3}
RECIPES = {
    "ganomaly": Recipe(adversarial.ganomaly_step, dict(_GAN, nz=100, width=64), ("nz", "width")),
    "skip-ganomaly": Recipe(adversarial.ganomaly_step, dict(_GAN, width=64), ("width",)),
    # pure GANs: batch 16 for 4x the updates per epoch at the same cost (DCGAN needs thousands of steps).
    # AnoGAN: 60 GAN epochs, then 240 of the encoder (~10 s each on a core): the label-free estimate
    # rose until ~epoch 240 (MTD: 0.589 at epochs 61-70, 0.636 at 241-300), its loss fell throughout
    "anogan": Recipe(gan_steps.anogan_step, dict(_GAN, epochs=300, batch=16, second_phase=1 / 5, nz=100, width=64),
                     ("nz", "width"), ("gan", "encoder")),
    "egbad": Recipe(gan_steps.egbad_step, dict(_GAN, batch=16, nz=100, width=64), ("nz", "width")),
    "ae": Recipe(reconstruction.reconstruction_step, dict(_AE, nz=100, width=64, loss="l2"), ("nz", "width", "loss")),
    # beta 0.1: with the KL at full weight the reconstructions blur (MTD: synthetic-defect AUROC 0.557 -> 0.609)
    "vae": Recipe(reconstruction.reconstruction_step, dict(_AE, nz=100, width=64, loss="l2", beta=0.1),
                  ("nz", "width", "loss", "beta")),
    "rvae": Recipe(reconstruction.reconstruction_step, dict(_AE, clip=10.0, nz=100, width=32, blocks=1, loss="l2", beta=0.1),
                   ("nz", "width", "blocks", "loss", "beta")),
    "oe-sdn": Recipe(reconstruction.oe_sdn_step, dict(_AE, second_phase=1 / 2, nz=100, width=64), ("nz", "width"),
                     ("ae", "sdn")),
}
MODELS = tuple(RECIPES)
HPARAMS = ("img_size", "epochs", "batch", "lr")


@dataclass
class Data:
    """The run's tensors in [0, 1]: training images, held-out good images, their synthetic-defect
    copies (masks at the map's resolution, kinds), test images and labels."""

    train: torch.Tensor
    held: torch.Tensor
    syn: torch.Tensor
    syn_masks: np.ndarray
    syn_kinds: List[str]
    test: Optional[torch.Tensor]
    labels: np.ndarray

    @property
    def labelled(self) -> bool:
        return bool(self.labels.size) and 0 < self.labels.sum() < self.labels.size


def train(model: str, data, backbone=None, weights=None, img_size: Optional[int] = None, epochs: Optional[int] = None,
          batch: Optional[int] = None, lr: Optional[float] = None, device: str = "cpu", resume: bool = False, out="runs",
          name: Optional[str] = None, seed: int = 0, *, channels: Optional[int] = None, nz: Optional[int] = None,
          width: Optional[int] = None, loss: Optional[str] = None, blocks: Optional[int] = None, beta: Optional[float] = None,
          contrast: Optional[str] = None, time_budget_s: Optional[float] = None, progress: bool = True,
          on_batch: Optional[Callable[[int, int], None]] = None, quiet: bool = False) -> Dict:
    """Train `model` (one of MODELS) on the good images of `data`; returns {"run_dir", "best", "last",
    "epochs", "elapsed_s", "threshold", "selection", "test_auroc" (last epoch, None without labels)}.

    None means the recipe's default (RECIPES; the log's first line says what was used).
    channels: 1 or 3 (default: 1 when every sampled training image is gray). contrast: "auto"
    (default: "standardize" when the good images' exposure varies, else "none"), "none" or
    "standardize" (edgeano.data.preprocess). time_budget_s: stop after the epoch that passes it.
    on_batch(epoch, step): called before each batch (raising KeyboardInterrupt there is Ctrl-C)."""
    if model not in RECIPES:
        raise EdgeanoError(f"edgeano.train.loop trains {', '.join(MODELS)}, not {model!r}", EXIT_USAGE)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeanoError("--device cuda asked for, but this torch has no CUDA device; use --device cpu")
    recipe = RECIPES[model]
    ds = load_dataset(data)
    if len(ds.train) < 3:  # 2 to train on (BatchNorm needs 2 per batch) + 1 held out for the threshold
        raise EdgeanoError(f"{data}: need at least 3 good training images, found {len(ds.train)}")
    opts = {"nz": nz, "width": width, "loss": loss, "blocks": blocks, "beta": beta}
    if resume:
        run_dir, ckpt = _resume(out, model, name, ds, data)
        ts = ckpt["train_state"]
        hp = dict(ts["hparams"], epochs=int(ts["hparams"]["epochs"] if epochs is None else epochs))
        pre, cfg = Preprocess.from_dict(ckpt["preprocess"]), dict(ckpt["config"])
    else:
        hp = _hparams(recipe, img_size, epochs, batch, lr, seed)
        cfg = _config(model, recipe, opts)
        if channels not in (None, 1, 3):
            raise EdgeanoError(f"channels must be 1 or 3, got {channels}", EXIT_USAGE)
        contrast = CONTRAST_AUTO if contrast in (None, CONTRAST_AUTO) else contrast_option(contrast)
        try:
            run_dir = new_run_dir(out, model, name)
        except FileExistsError as e:
            raise EdgeanoError(f"run {e} already exists: pass --resume to continue it, or another --name")
        ckpt, ts = None, None
    log = run_logger(run_dir)
    images = _read(ds, run_dir, log)
    if not resume:
        pre, why = _preprocess(hp["img_size"], channels, contrast, images[0])
        _announce(model, recipe, hp, cfg, pre, why, {"img_size": img_size, "epochs": epochs, "batch": batch, "lr": lr,
                                                    **opts}, quiet)
    d = _tensors(pre, images)
    if not resume:
        seed_everything(hp["seed"])
    net = create(model, pre, **cfg).to(device)
    step = recipe.step(net, hp)
    if resume:
        net.load_state_dict(ckpt["state_dict"])
        step.load_state_dict(ts["optim"])
        set_rng(ts["rng"])
    save_config(run_dir, {"model": model, "data": str(Path(data).resolve()), "channels": pre.channels, "contrast": pre.contrast,
                          **cfg, **hp, "device": device, "holdout_every": HOLDOUT_EVERY})
    final_phase = recipe.phases[-1] if recipe.phases else None
    return _loop(model, data, out, run_dir, net, step, hp, d, ds, ts, device, time_budget_s, progress, on_batch, quiet, log,
                 final_phase)


def _hparams(recipe: Recipe, img_size, epochs, batch, lr, seed) -> Dict:
    given = {"img_size": img_size, "epochs": epochs, "batch": batch, "lr": lr}
    hp = {k: (recipe.defaults[k] if v is None else v) for k, v in given.items()}
    hp = {"img_size": int(hp["img_size"]), "epochs": int(hp["epochs"]), "batch": int(hp["batch"]), "lr": float(hp["lr"]),
          "seed": int(seed)}
    for k in ("epochs", "batch", "lr"):
        if hp[k] <= 0:
            raise EdgeanoError(f"--{k} must be > 0, got {hp[k]}", EXIT_USAGE)
    try:  # before the run folder exists: a bad size leaves nothing behind
        check_img_size(hp["img_size"])
    except ValueError as e:
        raise EdgeanoError(f"--img-size: {e}", EXIT_USAGE)
    if "clip" in recipe.defaults:
        hp["clip"] = float(recipe.defaults["clip"])
    if "second_phase" in recipe.defaults:  # fixed at the start, so a resume with more --epochs keeps the split
        hp["second_phase_from"] = max(1, min(hp["epochs"] - 1, int(round(hp["epochs"] * recipe.defaults["second_phase"]))))
    return hp


def _config(model: str, recipe: Recipe, opts: Dict) -> Dict:
    extra = [k for k, v in opts.items() if v is not None and k not in recipe.config]
    if extra:
        raise EdgeanoError(f"--{', --'.join(extra)}: not a setting of {model} (it takes {', '.join(recipe.config) or 'none'})", EXIT_USAGE)
    cfg = {k: (recipe.defaults[k] if opts.get(k) is None else opts[k]) for k in recipe.config}
    for k in ("nz", "width", "blocks"):
        if k in cfg:
            cfg[k] = int(cfg[k])
            if cfg[k] < (0 if k == "blocks" else 1):
                raise EdgeanoError(f"--{k} must be {'>= 0' if k == 'blocks' else '> 0'}, got {cfg[k]}", EXIT_USAGE)
    if "beta" in cfg:
        cfg["beta"] = float(cfg["beta"])
        if cfg["beta"] < 0:
            raise EdgeanoError(f"--beta must be >= 0, got {cfg['beta']}", EXIT_USAGE)
    if "loss" in cfg and cfg["loss"] not in ("l2", "ssim"):
        raise EdgeanoError(f"--loss must be l2 or ssim, got {cfg['loss']!r}", EXIT_USAGE)
    return cfg


def _resume(out, model: str, name, ds, data):
    run_dir = resume_dir(out, model, name)
    ckpt = read_checkpoint(run_dir / "weights" / "last.pt")
    if ckpt["model"] != model:
        raise EdgeanoError(f"{run_dir} holds a {ckpt['model']} run, not {model}")
    if ckpt["meta"].get("train_fingerprint") != fingerprint(ds.train):
        raise EdgeanoError(f"{data} is not the data {run_dir} was trained on (fingerprint differs)")
    if "optim" not in ckpt.get("train_state", {}):
        raise EdgeanoError(f"{run_dir / 'weights' / 'last.pt'} was written by an older edgeano trainer and cannot be resumed")
    return run_dir, ckpt


def _read(ds, run_dir: Path, log):
    """(train images, held-out images, test images, test labels), decoded; unreadable files skipped."""
    kept, held = split_every(len(ds.train), HOLDOUT_EVERY)
    train_imgs, _, skipped = read_images([ds.train[i] for i in kept])
    held_imgs, _, skipped2 = read_images([ds.train[i] for i in held])
    if skipped or skipped2:
        report.warning(f"skipped {len(skipped) + len(skipped2)} unreadable images (see {run_dir / 'train.log'})")
        log.warning("unreadable: %s", [str(p) for p in skipped + skipped2])
    if len(train_imgs) < 2 or not held_imgs:
        raise EdgeanoError(f"{ds.root}: too few readable good images ({len(train_imgs) + len(held_imgs)}) to train and set a threshold")
    test_imgs, test_ok, _ = read_images([t.path for t in ds.test])
    by_path = {t.path: t.label for t in ds.test}
    return train_imgs, held_imgs, test_imgs, np.array([by_path[p] for p in test_ok], dtype=int)


def _tensors(pre: Preprocess, images) -> Data:
    train_imgs, held_imgs, test_imgs, labels = images
    test = torch.from_numpy(pre.batch(test_imgs)) if test_imgs else None
    syn, masks, kinds = synthetic_set(held_imgs, pre)
    return Data(torch.from_numpy(pre.batch(train_imgs)), torch.from_numpy(pre.batch(held_imgs)), torch.from_numpy(syn), masks,
                kinds, test, labels)


def _preprocess(size: int, channels: Optional[int], contrast: str, train_imgs: List[np.ndarray]):
    """The run's Preprocess and why its contrast setting (contrast "auto" decides from the exposure spread)."""
    channels = channels or (1 if all_gray(train_imgs[:20]) else 3)
    why = "given"
    if contrast == CONTRAST_AUTO:
        lo, hi = exposure_spread(train_imgs)
        varies = hi - lo > BRIGHTNESS_SPREAD
        contrast = "standardize" if varies else "none"
        why = (f"auto: the good images' mean brightness spans {lo:.2f}-{hi:.2f} (5th-95th percentile)"
               f"{'; --contrast none to keep brightness as evidence' if varies else ''}")
    return gan_preprocess(size, channels, contrast), why


def _announce(model, recipe, hp, cfg, pre, why, given, quiet) -> None:
    if quiet:
        return
    vals = {**{k: hp[k] for k in HPARAMS}, **cfg}
    shown = ", ".join(f"{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"{k.replace('_', '-')} {v}" for k, v in vals.items())
    defaults = [k.replace("_", "-") for k in vals if given.get(k) is None]
    report.info(f"{model}: {shown}; {pre.channels} channel(s); contrast {pre.contrast} ({why})")
    if defaults:
        report.info(f"  defaults used for: {', '.join(defaults)} (edgeano.train.loop.RECIPES; set them to override)")
    if "second_phase_from" in hp:
        a, b = recipe.phases
        report.info(f"  phases: {a} epochs 1-{hp['second_phase_from']}, {b} epochs {hp['second_phase_from'] + 1}-{hp['epochs']}")


def _loop(model, data, out, run_dir, net, step, hp, d: Data, ds, ts, device, time_budget_s, progress, on_batch, quiet, log,
          final_phase):
    n, bs = d.train.shape[0], min(hp["batch"], d.train.shape[0])
    nb = n // bs  # drop the ragged last batch: BatchNorm needs > 1 sample, and batches stay equal
    state = {"epoch": 0, "step": 0, "perm": None, "sums": {}, "history": [], "elapsed_s": 0.0, "d_reinits": 0, "selection": None}
    if ts is not None:
        state.update({k: ts[k] for k in state})
    selector = make_selector(state["selection"])
    weights_dir, meta_base = run_dir / "weights", {"train_fingerprint": fingerprint(ds.train)}
    t_start = time.time() - state["elapsed_s"]
    if not quiet:
        report.info(f"{ds.summary()}; training on {n}, {d.held.shape[0]} held out (thresholds, synthetic defects); {hp['epochs']} epochs x "
                    f"{nb} batches of {bs}; best.pt: {selector.method}")

    def save_last(mid_epoch: bool, meta: Optional[Dict] = None) -> Dict:
        state["selection"] = selector.state
        tstate = {"hparams": hp, "rng": get_rng(), "optim": to_cpu(step.state_dict()),
                  **{k: state[k] for k in ("epoch", "history", "d_reinits", "selection")},
                  "step": state["step"] if mid_epoch else 0, "perm": state["perm"] if mid_epoch else None,
                  "sums": state["sums"] if mid_epoch else {}, "elapsed_s": time.time() - t_start}
        meta = meta or _meta(net, d, meta_base, device)
        save_checkpoint(weights_dir / "last.pt", net, meta, tstate)
        return meta

    meta = None
    try:
        while state["epoch"] < hp["epochs"]:
            meta = _epoch(net, step, hp, d, state, nb, bs, device, progress, on_batch, meta_base)
            row = state["history"][-1]
            write_metrics(run_dir / "metrics.csv", state["history"])
            if selector.update(row["epoch"], row["synthetic_auroc"], final_phase in (None, row["phase"])):
                meta["selection"] = selector.describe()
                save_checkpoint(weights_dir / "best.pt", net, meta, {"epoch": row["epoch"]})
            save_last(mid_epoch=False, meta=meta)
            log.info("epoch %d %s", row["epoch"], row)
            if not quiet:
                report.info(_epoch_line(row, hp["epochs"]))
            if time_budget_s is not None and time.time() - t_start >= time_budget_s:
                log.info("time budget %.0fs reached after epoch %d", time_budget_s, row["epoch"])
                break
    except KeyboardInterrupt:
        save_last(mid_epoch=state["perm"] is not None)
        report.warning(f"interrupted at epoch {state['epoch'] + 1}, batch {state['step']}: saved {weights_dir / 'last.pt'}")
        report.info(f"next: edgeano train --model {model} --data {data} --out {out} --name {run_dir.name} --resume")
        raise
    best = weights_dir / "best.pt"
    final = meta or read_checkpoint(best)["meta"]
    if not quiet:
        report.info(f"wrote {run_dir} (best.pt = {selector.method}, last.pt, metrics.csv)")
        report.info(f"next: edgeano export --model {best}")
    return {"run_dir": run_dir, "best": best, "last": weights_dir / "last.pt", "epochs": state["epoch"],
            "elapsed_s": time.time() - t_start, "threshold": final["threshold"], "selection": selector.describe(),
            "test_auroc": final.get("test_auroc")}


def _epoch(net, step, hp, d: Data, state, nb, bs, device, progress, on_batch, meta_base) -> Dict:
    """One epoch from where `state` stands (a fresh epoch or a mid-epoch resume); appends its row."""
    epoch = state["epoch"]
    if state["perm"] is None:
        state["perm"], state["step"], state["sums"] = torch.randperm(d.train.shape[0]), 0, {}
    sums = state["sums"]  # running loss sums of this epoch (kept across a mid-epoch resume)
    phase = step.begin_epoch(epoch)
    bar = _bar(nb, f"epoch {epoch + 1}/{hp['epochs']} {phase}", progress, initial=state["step"])
    t_epoch = time.time()
    while state["step"] < nb:
        if on_batch:
            on_batch(epoch, state["step"])
        idx = state["perm"][state["step"] * bs:(state["step"] + 1) * bs]
        losses = step(d.train[idx].to(device))
        state["step"] += 1
        state["d_reinits"] += int(losses.pop("d_reinit", 0))
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
    bar.close()
    state["epoch"], state["step"], state["perm"], state["sums"] = epoch + 1, 0, None, {}
    meta = _meta(net, d, meta_base, device)
    row = {"epoch": epoch + 1, "phase": phase, **{k: v / max(nb, 1) for k, v in sums.items()}, "d_reinits": state["d_reinits"],
           "heldout_mean": meta["score_stats"]["mean"], "synthetic_auroc": meta["synthetic"]["image_auroc"],
           "synthetic_pixel_auroc": meta["synthetic"].get("pixel_auroc"), "test_auroc": meta.get("test_auroc"),
           "seconds": round(time.time() - t_epoch, 2)}
    state["history"].append(row)
    return meta


def _epoch_line(row: Dict, epochs: int) -> str:
    skip = {"epoch", "phase", "d_reinits", "heldout_mean", "synthetic_auroc", "synthetic_pixel_auroc", "test_auroc", "seconds"}
    losses = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in skip)
    syn = f"; synthetic-defect AUROC {row['synthetic_auroc']:.4f}"
    if row["synthetic_pixel_auroc"] is not None:
        syn += f" (pixel {row['synthetic_pixel_auroc']:.4f})"
    auc = "" if row["test_auroc"] is None else f"; test AUROC {row['test_auroc']:.4f} (monitor only)"
    return f"epoch {row['epoch']}/{epochs} [{row['phase']}]: {losses}; held-out score mean {row['heldout_mean']:.4g}{syn}{auc}"


@torch.no_grad()
def predict(net, x: torch.Tensor, device: str = "cpu", chunk: int = 64, maps: bool = False):
    """Image scores of an NCHW [0, 1] tensor in eval mode (and the anomaly maps, with maps=True)."""
    was_training = net.training
    net.eval()
    outs = [net(x[i:i + chunk].to(device)) for i in range(0, x.shape[0], chunk)]
    net.train(was_training)
    scores = torch.cat([o["score"].float().cpu() for o in outs]).numpy()
    if not maps:
        return scores
    return scores, torch.cat([o["anomaly_map"].float().cpu() for o in outs]).numpy()


def _meta(net, d: Data, meta_base: Dict, device: str) -> Dict:
    """Threshold (1 % FPR on held-out good images; F1-max on test/ when labelled, for reference),
    score stats, map normalisation, the synthetic-defect estimate (label-free: what selects best.pt)
    and the test AUROC (a monitor: nothing selects on it)."""
    held, held_maps = predict(net, d.held, device, maps=True)
    syn, syn_maps = predict(net, d.syn, device, maps=True)
    thr = {"value": metrics.threshold_at_fpr(held, THRESHOLD_FPR), "method": f"fpr@{THRESHOLD_FPR} held-out normal (n={held.size})"}
    meta = dict(meta_base, score_stats=score_stats(held), threshold=thr, map=map_normalisation(held_maps, THRESHOLD_FPR),
                synthetic=synthetic_estimate(held, held_maps, syn, syn_maps, d.syn_masks, d.syn_kinds))
    if d.labelled:
        s = predict(net, d.test, device)
        f1 = metrics.f1_max(d.labels, s)
        thr["f1_max"], thr["f1"] = f1["threshold"], f1["f1"]
        meta["test_auroc"] = metrics.auroc(d.labels, s)
    return meta


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, disable=not enabled, leave=False, dynamic_ncols=True)
