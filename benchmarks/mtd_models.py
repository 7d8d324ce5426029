"""MTD (Magnetic Tile Defects) benchmark for every model `edgeano.train.loop` trains, end to end like
a user: train on a CPU budget -> export best.pt (chosen without test labels) to ONNX -> FP16 and
INT8 QDQ -> score test/ through the public Engine on ONNX Runtime: image AUROC, pixel AUROC (the
ground-truth masks at the map's resolution), TPR/FPR at the artifact threshold; CPU latency.
Prints one JSON document (and writes it with --json).

    nice -n 10 .venv/bin/python benchmarks/mtd_models.py --model ae --out /tmp/mtd-models \\
        --name ae-s0 --json /tmp/mtd-models/ae-s0.json            # the trainer's defaults
    ... --model anogan --latent-search 500                        # + the paper's scoring, in PyTorch

Unset options take the trainer's defaults (edgeano.train.loop.RECIPES), so the figures are what
`edgeano train --model NAME --data mtd` gives. `test_auroc_by_epoch` (from metrics.csv) is the
monitor column: how steady the model is near the end, never used to pick the checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def test_set(data: Path):
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image

    items = [t for t in load_dataset(data, need_test=True).test]
    frames = [read_image(t.path) for t in items]
    keep = [i for i, f in enumerate(frames) if f is not None]
    return [frames[i] for i in keep], [items[i] for i in keep]


def masks_at(items, size_hw):
    """(N, H, W) uint8 masks at the map's resolution, nearest (a defect thinner than a map pixel
    keeps its pixels); good images and defects without a mask file are all zero."""
    import cv2

    h, w = size_hw
    out = np.zeros((len(items), h, w), np.uint8)
    for i, t in enumerate(items):
        if t.mask is None:
            continue
        m = (cv2.imread(str(t.mask), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
        r = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        if m.any() and not r.any():
            r = (cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
        out[i] = r
    return out


def evaluate(engine, frames, items, batch: int = 32) -> dict:
    from edgeano.evaluation.metrics import auroc, f1_max

    scores, maps = [], []
    for i in range(0, len(frames), batch):
        res = engine.score(frames[i:i + batch])
        scores.append(res.scores)
        if res.maps is not None:
            maps.append(res.maps)
    s = np.concatenate(scores).astype(np.float64)
    labels = np.array([t.label for t in items])
    thr = engine.threshold
    out = {"image_auroc": round(auroc(labels, s), 4), "f1_max": round(f1_max(labels, s)["f1"], 4),
           "fpr_at_threshold": round(float((s[labels == 0] >= thr).mean()), 4),
           "tpr_at_threshold": round(float((s[labels == 1] >= thr).mean()), 4), "n_test": int(labels.size)}
    if maps:
        m = np.concatenate(maps)
        gt = masks_at(items, m.shape[1:])
        out["pixel_auroc"] = round(auroc(gt.reshape(-1), m.reshape(-1)), 4)
        mt = engine.meta.get("map", {}).get("threshold")
        if mt is not None:  # the artifact's map threshold: share of good images with any pixel above it
            peaks = m.reshape(m.shape[0], -1).max(1)
            out["good_images_with_map_above_threshold"] = round(float((peaks[labels == 0] >= mt).mean()), 4)
    return out, s


def latency(path: Path, threads: int, batch: int = 1, seconds: float = 4.0) -> dict:
    """Median wall time of Engine.infer on a fixed preprocessed batch (preprocessing excluded)."""
    from edgeano.runtime.engine import Engine

    eng = Engine.load(path, backend="onnxruntime", threads=threads)
    x = np.random.default_rng(0).random((batch,) + eng.preprocess.input_shape, dtype=np.float32)
    for _ in range(3):
        eng.infer(x)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 10:
        t = time.perf_counter()
        eng.infer(x)
        times.append(time.perf_counter() - t)
    return {"median_ms": round(float(np.median(times)) * 1e3, 3), "runs": len(times)}


def epoch_curve(run_dir: Path) -> dict:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    a = [float(r["test_auroc"]) for r in rows if r.get("test_auroc")]
    last10 = a[-10:]
    return {"epochs": len(rows), "last10_min": round(min(last10), 4), "last10_median": round(float(np.median(last10)), 4),
            "last10_max": round(max(last10), 4), "max": round(max(a), 4), "argmax_epoch": int(np.argmax(a)) + 1,
            "seconds_per_epoch_median": round(float(np.median([float(r["seconds"]) for r in rows])), 2)} if a else {}


def latent_search_eval(ckpt: Path, frames, items, steps: int, threads: int) -> dict:
    """AnoGAN's own scoring (Γ Adam steps on z per image) through the PyTorch runner: AUROC and speed."""
    from edgeano.evaluation.metrics import auroc
    from edgeano.models.anogan import LatentSearch
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
    from edgeano.models.runner import TorchRunner
    from edgeano.runtime.engine import Engine

    model, ck = load_checkpoint(ckpt)
    eng = Engine(TorchRunner(LatentSearch(model, steps=steps)), checkpoint_metadata(model, ck))
    t = time.time()
    res, s = evaluate(eng, frames, items, batch=64)
    dt = time.time() - t
    labels = np.array([t.label for t in items])
    return {"steps": steps, **{k: res[k] for k in ("image_auroc", "pixel_auroc")}, "seconds": round(dt, 1),
            "images_per_s": round(len(frames) / dt, 2), "threads": threads, "auroc_check": round(auroc(labels, s), 4)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    for k, t in (("img-size", int), ("epochs", int), ("batch", int), ("lr", float), ("width", int), ("nz", int),
                 ("blocks", int), ("channels", int), ("beta", float)):
        ap.add_argument(f"--{k}", type=t, default=None)
    ap.add_argument("--loss", choices=("l2", "ssim"), default=None)
    ap.add_argument("--contrast", choices=("auto", "none", "standardize"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-min", type=float, default=None, help="stop training after the epoch that passes this")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (the CPU is shared)")
    ap.add_argument("--calib", type=int, default=512, help="INT8 calibration images (0: no INT8)")
    ap.add_argument("--latent-search", type=int, default=0, metavar="STEPS", help="anogan: also score with the paper's search")
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgeano-mtd-models"))
    ap.add_argument("--name", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--skip-train", type=Path, default=None, help="evaluate this run folder instead of training")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    from edgeano.calibration.quantize import calibrate_onnx
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import sample_frames
    from edgeano.export.fp16 import to_fp16
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
    from edgeano.runtime.engine import Engine
    from edgeano.train.loop import train

    report = {"model": a.model, "data": str(a.data), "seed": a.seed, "threads": a.threads, "cpu_count": os.cpu_count()}
    if a.skip_train:
        run_dir = a.skip_train
    else:
        given = {k: getattr(a, k) for k in ("img_size", "epochs", "batch", "lr", "width", "nz", "blocks", "loss", "channels", "beta")}
        res = train(a.model, a.data, seed=a.seed, out=a.out, name=a.name, resume=a.resume, contrast=a.contrast,
                    time_budget_s=a.budget_min * 60 if a.budget_min else None, progress=sys.stderr.isatty(),
                    **{k: v for k, v in given.items() if v is not None})
        run_dir = res["run_dir"]
        report.update(train_minutes=round(res["elapsed_s"] / 60, 2), epochs_trained=res["epochs"], selection=res["selection"])
    report["run_dir"] = str(run_dir)
    report["config"] = json.loads((run_dir / "config.json").read_text())
    report["test_auroc_by_epoch"] = epoch_curve(run_dir)
    ckpt = run_dir / "weights" / "best.pt"
    model, ck = load_checkpoint(ckpt)
    onnx_path = export_onnx(model, run_dir / "weights" / "best.onnx", checkpoint_metadata(model, ck), dynamic_batch=True)
    frames, items = test_set(a.data)
    paths = {"fp32": onnx_path, "fp16": run_dir / "weights" / "best.fp16.onnx"}
    to_fp16(onnx_path, paths["fp16"], frames=sample_frames(load_dataset(a.data).train, 16))
    if a.calib:
        paths["int8"] = run_dir / "weights" / "best.int8.onnx"
        calibrate_onnx(onnx_path, paths["int8"], a.data / "train" / "good", num=a.calib, progress=False, verbose=False)
    scores = {}
    for prec, p in paths.items():
        with Engine.load(p, backend="onnxruntime", threads=a.threads) as eng:
            report[prec], scores[prec] = evaluate(eng, frames, items)
        report[prec]["latency_b1"] = latency(p, a.threads)
    report["map"] = ck["meta"].get("map")
    if "int8" in report:
        report["int8_drop_points"] = round(100 * (report["fp32"]["image_auroc"] - report["int8"]["image_auroc"]), 2)
    report["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    report["onnx_mb"] = round(onnx_path.stat().st_size / 2**20, 2)
    if a.latent_search:
        report["latent_search"] = latent_search_eval(ckpt, frames, items, a.latent_search, a.threads)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if a.json:
        from edgeano.fileio import write_text

        write_text(a.json, text + "\n")
    return report


if __name__ == "__main__":
    main()
