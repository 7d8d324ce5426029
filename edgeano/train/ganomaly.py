"""`edgeano train --model ganomaly|skip-ganomaly`: adversarial training on good images.

runs/<model>/<name>/
    weights/last.pt   every epoch, and on Ctrl-C (mid-epoch, resumable exactly with --resume)
    weights/best.pt   best validation AUROC when the data has anomalous test images, else the last epoch
    metrics.csv       one row per epoch: losses, D re-inits, validation AUROC, seconds
    config.json, train.log

Every 10th image of train/good is held out (never trained on) to set the threshold at 1% FPR.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from edgeano.evaluation import metrics
from edgeano.artifact import score_stats
from edgeano.data.datasets import fingerprint, load_dataset
from edgeano.data.images import read_images
from edgeano.data.preprocess import Preprocess, split_every
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_text
from edgeano.models.checkpoint import read_checkpoint, save_checkpoint
from edgeano.models.dcgan import check_img_size
from edgeano.models.ganomaly import gan_preprocess
from edgeano.models.registry import create
from edgeano.train.adversarial import AdversarialStep, make_discriminator
from edgeano.train.runs import contrast_option, new_run_dir, run_logger, save_config

MODELS = ("ganomaly", "skip-ganomaly")
DEFAULTS = {"img_size": 128, "epochs": 15, "batch": 32, "lr": 2e-4, "nz": 100, "width": 64}
HOLDOUT_EVERY = 10  # every 10th good image -> threshold set
THRESHOLD_FPR = 0.01
BRIGHTNESS_SPREAD = 0.25  # 5th-95th percentile of image means beyond this -> suggest --contrast standardize
GRAY_TOLERANCE = 2  # max |B-G|, |G-R| (8-bit levels) for data to count as grayscale
report = logging.getLogger(__name__)  # results for the CLI to print (library code stays CLI-free)
COLUMNS = ("epoch", "g", "adv", "con", "enc", "lat", "d", "d_reinits", "val_auroc", "heldout_mean", "seconds")


def train(model: str, data, backbone=None, weights=None, img_size: Optional[int] = None, epochs: Optional[int] = None,
          batch: Optional[int] = None, lr: Optional[float] = None, device: str = "cpu", resume: bool = False, out="runs",
          name: Optional[str] = None, seed: int = 0, *, channels: Optional[int] = None, nz: Optional[int] = None,
          width: Optional[int] = None, contrast: Optional[str] = None, time_budget_s: Optional[float] = None,
          progress: bool = True, on_batch: Optional[Callable[[int, int], None]] = None, quiet: bool = False) -> Dict:
    """Train GANomaly or Skip-GANomaly; returns {"run_dir", "best", "last", "epochs", "best_auroc", "threshold"}.

    channels: 1 or 3 (default: 1 when every sampled training image is gray). nz: GANomaly latent size.
    width: base conv width (64 in the papers). contrast: "none" (default) or "standardize" (per-image
    contrast normalisation inside the graph; see edgeano.data.preprocess).
    time_budget_s: stop after the epoch that passes it.
    on_batch(epoch, step): called before each batch (progress hooks; raising KeyboardInterrupt there
    behaves like Ctrl-C)."""
    if model not in MODELS:
        raise EdgeanoError(f"edgeano.train.ganomaly trains {', '.join(MODELS)}, not {model!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeanoError("--device cuda asked for, but this torch has no CUDA device; use --device cpu")
    ds = load_dataset(data)
    if len(ds.train) < 3:  # 2 to train on (BatchNorm needs 2 per batch) + 1 held out for the threshold
        raise EdgeanoError(f"{data}: need at least 3 good training images, found {len(ds.train)}")

    if resume:
        run_dir = _resume_dir(out, model, name)
        ckpt = read_checkpoint(run_dir / "weights" / "last.pt")
        if ckpt["model"] != model:
            raise EdgeanoError(f"{run_dir} holds a {ckpt['model']} run, not {model}")
        if ckpt["meta"].get("train_fingerprint") != fingerprint(ds.train):
            raise EdgeanoError(f"{data} is not the data {run_dir} was trained on (fingerprint differs)")
        ts = ckpt["train_state"]
        hp = dict(ts["hparams"], epochs=int(ts["hparams"]["epochs"] if epochs is None else epochs))
        pre = Preprocess.from_dict(ckpt["preprocess"])
        cfg = dict(ckpt["config"])
    else:
        given = {"epochs": epochs, "batch": batch, "lr": lr}
        hp = {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}
        hp = {"epochs": int(hp["epochs"]), "batch": int(hp["batch"]), "lr": float(hp["lr"]), "seed": int(seed)}
        for k in ("epochs", "batch", "lr"):
            if hp[k] <= 0:
                raise EdgeanoError(f"--{k} must be > 0, got {hp[k]}")
        try:  # before the run folder exists: a bad size leaves nothing behind
            check_img_size(int(img_size or DEFAULTS["img_size"]))
        except ValueError as e:
            raise EdgeanoError(f"--img-size: {e}")
        if channels not in (None, 1, 3):
            raise EdgeanoError(f"channels must be 1 or 3, got {channels}")
        contrast = contrast_option(contrast)
        try:
            run_dir = new_run_dir(out, model, name)
        except FileExistsError as e:
            raise EdgeanoError(f"run {e} already exists: pass --resume to continue it, or another --name")
        ts, ckpt = None, None
    log = run_logger(run_dir)

    kept, held = split_every(len(ds.train), HOLDOUT_EVERY)
    train_imgs, _, skipped = read_images([ds.train[i] for i in kept])
    held_imgs, _, skipped2 = read_images([ds.train[i] for i in held])
    if skipped or skipped2:
        print(f"warning: skipped {len(skipped) + len(skipped2)} unreadable images (see {run_dir / 'train.log'})", file=sys.stderr)
        log.warning("unreadable: %s", [str(p) for p in skipped + skipped2])
    if len(train_imgs) < 2 or not held_imgs:
        raise EdgeanoError(f"{data}: too few readable good images ({len(train_imgs) + len(held_imgs)}) to train and set a threshold")
    if not resume:
        size = int(img_size or DEFAULTS["img_size"])
        channels = channels or (1 if _all_gray(train_imgs[:20]) else 3)
        pre = gan_preprocess(size, channels, contrast)
        _brightness_hint(train_imgs, pre, quiet)
        cfg = {"width": int(width or DEFAULTS["width"])}
        if model == "ganomaly":
            cfg["nz"] = int(nz or DEFAULTS["nz"])
    test_imgs, test_ok, _ = read_images([t.path for t in ds.test])
    by_path = {t.path: t.label for t in ds.test}
    test_labels = np.array([by_path[p] for p in test_ok], dtype=int)
    validate = bool(test_labels.size) and 0 < test_labels.sum() < test_labels.size

    x_train = torch.from_numpy(pre.batch(train_imgs))
    x_held = torch.from_numpy(pre.batch(held_imgs))
    x_test = torch.from_numpy(pre.batch(test_imgs)) if test_imgs else None
    del train_imgs, held_imgs, test_imgs

    if not resume:
        _seed_everything(hp["seed"])
    net = create(model, pre, **cfg).to(device)
    disc = make_discriminator(net).to(device)
    step = AdversarialStep(net, disc, hp["lr"])
    if resume:
        net.load_state_dict(ckpt["state_dict"])
        step.load_state_dict({k: ts[k] for k in ("discriminator", "opt_g", "opt_d")})
        _set_rng(ts["rng"])
    meta_base = {"train_fingerprint": fingerprint(ds.train)}
    save_config(run_dir, {"model": model, "data": str(Path(data).resolve()), "img_size": pre.size[0], "channels": pre.channels,
                          "contrast": pre.contrast,
                          **cfg, **hp, "device": device, "holdout_every": HOLDOUT_EVERY})

    n, bs = x_train.shape[0], min(hp["batch"], x_train.shape[0])
    nb = n // bs  # drop the ragged last batch: BatchNorm needs > 1 sample, and batches stay equal
    state = {"epoch": 0, "step": 0, "perm": None, "sums": {}, "best_auroc": float("-inf"), "history": [], "elapsed_s": 0.0,
             "d_reinits": 0}
    if resume:
        state.update({k: ts[k] for k in state})
    weights_dir = run_dir / "weights"
    t_start = time.time() - state["elapsed_s"]
    if not quiet:
        print(f"{model}: {ds.summary()}; training on {n}, {len(held)} held out for the threshold; "
              f"{pre.size[0]}px {pre.channels}ch, {hp['epochs']} epochs x {nb} batches of {bs}", file=sys.stderr)

    def save_last(mid_epoch: bool, meta: Optional[Dict] = None) -> Dict:
        tstate = {"hparams": hp, "rng": _get_rng(), **_to_cpu(step.state_dict()),
                  **{k: state[k] for k in ("epoch", "best_auroc", "history", "d_reinits")},
                  "step": state["step"] if mid_epoch else 0, "perm": state["perm"] if mid_epoch else None,
                  "sums": state["sums"] if mid_epoch else {},
                  "elapsed_s": time.time() - t_start}
        meta = meta or _meta(net, x_held, x_test, test_labels if validate else None, meta_base, device)
        save_checkpoint(weights_dir / "last.pt", net, meta, tstate)
        return meta

    meta = None
    try:
        while state["epoch"] < hp["epochs"]:
            epoch = state["epoch"]
            if state["perm"] is None:
                state["perm"], state["step"], state["sums"] = torch.randperm(n), 0, {}
            sums = state["sums"]  # running loss sums of this epoch (kept across a mid-epoch resume)
            net.train(), disc.train()
            bar = _bar(nb, f"epoch {epoch + 1}/{hp['epochs']}", progress, initial=state["step"])
            t_epoch = time.time()
            while state["step"] < nb:
                if on_batch:
                    on_batch(epoch, state["step"])
                idx = state["perm"][state["step"] * bs:(state["step"] + 1) * bs]
                losses = step(x_train[idx].to(device))
                state["step"] += 1
                state["d_reinits"] += int(losses.pop("d_reinit"))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
            bar.close()
            state["epoch"], state["step"], state["perm"], state["sums"] = epoch + 1, 0, None, {}
            row = {"epoch": epoch + 1, **{k: v / max(nb, 1) for k, v in sums.items()}, "d_reinits": state["d_reinits"]}
            meta = _meta(net, x_held, x_test, test_labels if validate else None, meta_base, device)
            row.update(val_auroc=meta.get("val_auroc", float("nan")), heldout_mean=meta["score_stats"]["mean"],
                       seconds=round(time.time() - t_epoch, 2))
            state["history"].append(row)
            _write_metrics(run_dir / "metrics.csv", state["history"])
            improved = validate and row["val_auroc"] > state["best_auroc"]
            if improved:
                state["best_auroc"] = row["val_auroc"]
            if improved or not validate:
                save_checkpoint(weights_dir / "best.pt", net, meta, {"epoch": epoch + 1})
            save_last(mid_epoch=False, meta=meta)
            log.info("epoch %d %s", epoch + 1, row)
            if not quiet:
                auc = f" val AUROC {row['val_auroc']:.4f}" if validate else ""
                print(f"epoch {epoch + 1}: G {row['g']:.4f} D {row['d']:.4f}{auc}", file=sys.stderr)
            if time_budget_s is not None and time.time() - t_start >= time_budget_s:
                log.info("time budget %.0fs reached after epoch %d", time_budget_s, epoch + 1)
                break
    except KeyboardInterrupt:
        save_last(mid_epoch=state["perm"] is not None)
        print(f"\ninterrupted at epoch {state['epoch'] + 1}, batch {state['step']}: saved {weights_dir / 'last.pt'}", file=sys.stderr)
        print(f"next: edgeano train --model {model} --data {data} --out {out} --name {run_dir.name} --resume", file=sys.stderr)
        raise
    best = weights_dir / "best.pt"
    result = {"run_dir": run_dir, "best": best, "last": weights_dir / "last.pt", "epochs": state["epoch"],
              "best_auroc": state["best_auroc"] if validate else None, "elapsed_s": time.time() - t_start,
              "threshold": (meta or read_checkpoint(best)["meta"])["threshold"]}
    if not quiet:
        report.info(f"wrote {run_dir} (best.pt, last.pt, metrics.csv)")
        report.info(f"next: edgeano export --model {best}")
    return result


@torch.no_grad()
def predict(net, x: torch.Tensor, device: str = "cpu", chunk: int = 64) -> np.ndarray:
    """Image scores of an NCHW [0,1] tensor in eval mode (restores train mode after)."""
    was_training = net.training
    net.eval()
    out = [net(x[i:i + chunk].to(device))["score"].float().cpu() for i in range(0, x.shape[0], chunk)]
    net.train(was_training)
    return torch.cat(out).numpy()


def _meta(net, x_held, x_test, test_labels, meta_base: Dict, device: str) -> Dict:
    """threshold (1% FPR on held-out good images, plus F1-max on the test set), score stats, AUROC."""
    held = predict(net, x_held, device)
    thr = {"value": metrics.threshold_at_fpr(held, THRESHOLD_FPR), "method": f"fpr@{THRESHOLD_FPR} held-out normal (n={held.size})"}
    meta = dict(meta_base, score_stats=score_stats(held), threshold=thr)
    if test_labels is not None:
        s = predict(net, x_test, device)
        f1 = metrics.f1_max(test_labels, s)
        thr["f1_max"], thr["f1"] = f1["threshold"], f1["f1"]
        meta["val_auroc"] = metrics.auroc(test_labels, s)
    return meta


def _resume_dir(out, model: str, name: Optional[str]) -> Path:
    base = Path(out) / model
    if name:
        d = base / name
    else:
        found = sorted(base.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise EdgeanoError(f"--resume: no {model} run with weights/last.pt under {base}")
        d = found[-1].parent.parent
    if not (d / "weights" / "last.pt").is_file():
        raise EdgeanoError(f"--resume: {d / 'weights' / 'last.pt'} not found; train without --resume first")
    return d


def _brightness_hint(images: List[np.ndarray], pre: Preprocess, quiet: bool) -> None:
    """Exposure that varies a lot between good images swamps what GANomaly learns (MTD: image AUROC
    0.64 without contrast normalisation, 0.91-0.93 with it; docs/benchmarks/ganomaly.md): say so."""
    if quiet or pre.contrast != "none" or len(images) < 2:
        return
    step = max(1, len(images) // 500)  # an even sample: files sorted by name may group by session/exposure
    means = np.array([float(im.mean()) / 255.0 for im in images[::step]])
    lo, hi = np.percentile(means, [5, 95])
    if hi - lo > BRIGHTNESS_SPREAD:
        print(f"note: the good images' exposure varies (image means {lo:.2f}-{hi:.2f}, 5th-95th percentile); consider "
              "--contrast standardize, which normalises each image inside the model (Magnetic Tile Defects: "
              "GANomaly AUROC 0.64 -> 0.91-0.93)", file=sys.stderr)


def _all_gray(images: List[np.ndarray]) -> bool:
    for im in images:
        b, g, r = (im[..., i].astype(np.int16) for i in range(3))
        if max(np.abs(b - g).max(), np.abs(g - r).max()) > GRAY_TOLERANCE:
            return False
    return True


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _get_rng() -> Dict:
    """RNG states as tensors/lists/numbers (torch.load(weights_only=True) safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "python": _py_state_to_list(random.getstate())}
    if torch.cuda.is_available():  # D re-init on a GPU draws from the CUDA generator
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: Dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))


def _py_state_to_list(st) -> List:
    return [st[0], list(st[1]), st[2]]


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, disable=not enabled, leave=False, dynamic_ncols=True)


def _write_metrics(path: Path, rows: List[Dict]) -> None:
    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    lines = [",".join(COLUMNS)] + [",".join(fmt(r.get(c)) for c in COLUMNS) for r in rows]
    write_text(path, "\n".join(lines) + "\n")
