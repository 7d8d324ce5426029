"""Gaussian AD (Lite0) on Magnetic Tile Defects: image AUROC with PyTorch and ONNX Runtime,
per-class AUROC, and batch-1 latency PyTorch eager vs ONNX Runtime FP32. Prints JSON. The
score-only model (`--map none`, the model before issue 14); the map model: mtd_gaussian_map.py.

    nice -n 10 .venv/bin/python benchmarks/mtd_gaussian.py --data ../shared/data/mtd \
        --json docs/benchmarks/gaussian.json --roc docs/benchmarks/gaussian_roc.png
    nice -n 10 .venv/bin/python benchmarks/mtd_gaussian.py --explore --sizes 224,256,320   # variant sweep

`--explore` extracts every level's avg- and max-pooled features once per input size, then fits
and scores many (levels, pooling) variants on them; the default mode runs the shipped
configuration end to end through the public API (fit_gaussian -> checkpoint -> ONNX -> Engine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.data.preprocess import CONTRASTS, Preprocess, split_every
from edgeano.evaluation.metrics import auroc, f1_max, roc_curve
from edgeano.models.gaussian import DEFAULT_LEVELS, DEFAULT_POOL, POOLS, GaussianAD, ledoit_wolf, precision_factor
from edgeano.train.gaussian import DEFAULT_SIZE, extract_features, fit_gaussian, make_preprocess

HOLDOUT_EVERY = 10  # the sweep's fit split (every 10th train image held out), as when it was measured

ROOT = Path(__file__).resolve().parent.parent
ALL_LEVELS = tuple(range(9))
LEVEL_SETS = [ALL_LEVELS, (1, 2, 3, 4, 5, 6, 7, 8), (3, 4, 5, 6, 7, 8), (5, 6, 7, 8), (8,), (7,),
              (0, 1, 2, 3, 4, 5, 6, 7), (1, 2, 3, 4, 5, 6, 7), (2, 3, 4, 5, 6, 7), (3, 4, 5, 6, 7), (4, 5, 6, 7), (1, 2, 3, 4, 5, 6)]
VARIANTS = [(lv, pool) for pool in ("avg", "max", "avgmax") for lv in LEVEL_SETS]  # (levels, pool)


def per_class_auroc(labels, defects, scores):
    labels, defects, scores = np.asarray(labels), np.asarray(defects), np.asarray(scores)
    good = labels == 0
    return {c: round(auroc(np.r_[np.zeros(good.sum()), np.ones((defects == c).sum())], np.r_[scores[good], scores[defects == c]]), 4)
            for c in sorted(set(defects[labels == 1]))}


def explore(ds, sizes, batch, cache=None):
    """AUROC of every variant in VARIANTS at every size, from one feature pass per size."""
    train_paths, test_paths = ds.train, [t.path for t in ds.test]
    labels = np.array([t.label for t in ds.test])
    rows = []
    for size in sizes:
        probe = GaussianAD(make_preprocess("efficientnet-lite0", size), levels=ALL_LEVELS, pool="avgmax")
        from edgeano.models.backbones import pretrained

        net, _ = pretrained("efficientnet-lite0", num_classes=0)
        probe.backbone = net
        t0 = time.perf_counter()
        cached = Path(cache) / f"mtd_lite0_{size}.pt" if cache else None
        if cached and cached.is_file():  # features only depend on (size, weights, data): reuse between sweeps
            ftr, used_tr, fte, used_te = torch.load(cached, weights_only=True)
        else:
            ftr, used_tr, _ = extract_features(probe, train_paths, batch, desc=f"train {size}")
            fte, used_te, _ = extract_features(probe, test_paths, batch, desc=f"test {size}")
            ftr, fte = ftr.pooled, fte.pooled
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save([ftr, used_tr, fte, used_te], cached)
        t_feat = time.perf_counter() - t0
        fit_idx, _ = split_every(len(used_tr), HOLDOUT_EVERY)  # fit on what the trainer fits on
        y = labels[used_te]
        for levels, pool in VARIANTS:
            total_raw = np.zeros(len(used_te))
            total_norm = np.zeros(len(used_te))
            for lv in levels:
                d = probe.dims[lv] // 2
                tr, te = ftr[lv], fte[lv]
                if pool == "avg":
                    tr, te = tr[:, :d], te[:, :d]
                elif pool == "max":
                    tr, te = tr[:, d:], te[:, d:]
                mean, cov, _ = ledoit_wolf(tr[fit_idx])
                w = precision_factor(cov)
                d2 = (((te - mean) @ w) ** 2).sum(1).numpy()
                total_raw += d2
                total_norm += d2 / tr.shape[1]
            row = {"size": size, "levels": list(levels), "pool": pool, "auroc": round(auroc(y, total_raw), 4),
                   "auroc_level_normalised": round(auroc(y, total_norm), 4)}
            rows.append(row)
            print("\n" + json.dumps(row), file=sys.stderr, flush=True)
        print(f"size {size}: feature pass {t_feat:.0f} s", file=sys.stderr)
    return rows


def latency_pair(fn_a, fn_b, x_a, x_b, runs=100, warmup=10):
    """Median/p90 ms of two callables, interleaved run by run so both see the same machine load."""
    for _ in range(warmup):
        fn_a(x_a)
        fn_b(x_b)
    ta, tb = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn_a(x_a)
        t1 = time.perf_counter()
        fn_b(x_b)
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1000)
        tb.append((t2 - t1) * 1000)

    def stats(t):
        return {"median_ms": round(statistics.median(t), 3), "p90_ms": round(float(np.percentile(t, 90)), 3), "runs": runs}

    return stats(ta), stats(tb)


def compare_latency(model, onnx_path, frame, threads):
    """Batch 1, the same preprocessed frame, `threads` threads each: PyTorch eager vs ONNX Runtime FP32."""
    from edgeano.runtime.onnxruntime import OnnxRuntimeRunner

    x = model.preprocess.batch([frame])
    torch.set_num_threads(threads)

    def torch_eager(t):
        with torch.inference_mode():
            return model(t)

    ort = OnnxRuntimeRunner(onnx_path, threads=threads)
    lat_t, lat_o = latency_pair(torch_eager, ort.infer, torch.from_numpy(x), x)
    return {"threads": threads, "pytorch_eager": lat_t, "onnxruntime_fp32": lat_o,
            "speedup_ort_vs_torch": round(lat_t["median_ms"] / lat_o["median_ms"], 2),
            "note": "interleaved runs on a shared 2-core machine with other jobs running: indicative only"}


def draw_roc(path, curves):
    """ROC curves as a PNG with OpenCV (no matplotlib): [(label, fpr, tpr, bgr)]."""
    s, m = 480, 50
    img = np.full((s + 2 * m, s + 2 * m, 3), 255, np.uint8)
    cv2.rectangle(img, (m, m), (m + s, m + s), (0, 0, 0), 1)
    cv2.line(img, (m, m + s), (m + s, m), (200, 200, 200), 1)
    for k, (label, fpr, tpr, color) in enumerate(curves):
        pts = np.stack([m + fpr * s, m + s - tpr * s], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        cv2.putText(img, label, (m + s - 190, m + s - 15 - 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    cv2.putText(img, "FPR", (m + s // 2 - 15, m + s + 35), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "TPR", (5, m + s // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "Gaussian AD (Lite0) on MTD: image ROC", (m, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    from edgeano.fileio import write_bytes

    write_bytes(path, buf.tobytes())


def end_to_end(ds, size, levels, pool, batch, threads, roc_png=None, contrast="none"):
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
    from edgeano.models.runner import TorchRunner
    from edgeano.runtime.engine import Engine
    t0 = time.perf_counter()
    base = Preprocess(size=(size, size), contrast=contrast)
    model, meta = fit_gaussian(ds.train, base, img_size=size, levels=levels, pool=pool, batch=batch, map_levels=())  # score only
    t_fit = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix="mtd_gaussian_"))
    ckpt_path = save_checkpoint(work / "best.pt", model, meta)
    model, ckpt = load_checkpoint(ckpt_path)  # score what a user would load, not the in-memory object
    onnx_path = export_onnx(model, work / "gaussian.onnx", checkpoint_metadata(model, ckpt))

    frames, labels, defects = [], [], []
    for t in ds.test:
        img = read_image(t.path)
        if img is not None:
            frames.append(img)
            labels.append(t.label)
            defects.append(t.defect)
    engines = {"pytorch": Engine(TorchRunner(model), checkpoint_metadata(model, ckpt)), "onnxruntime": Engine.load(onnx_path)}
    res = {}
    for name, eng in engines.items():
        scores = np.concatenate([eng.score(frames[i:i + batch]).scores for i in range(0, len(frames), batch)])
        res[name] = scores
    thr = meta["threshold"]["value"]
    out = {
        "config": {"backbone": "efficientnet-lite0", "img_size": size, "levels": list(levels), "pool": pool},
        "n_train_fit": meta["n_train"], "threshold_folds": meta["threshold_folds"], "n_test": len(frames),
        "fit_seconds": round(t_fit, 1),
        "auroc": {k: round(auroc(labels, v), 4) for k, v in res.items()},
        "per_class_auroc": per_class_auroc(labels, defects, res["onnxruntime"]),
        "f1_max": round(f1_max(labels, res["onnxruntime"])["f1"], 4),
        "threshold": meta["threshold"],
        "at_threshold": {"fpr_test_good": round(float(np.mean(res["onnxruntime"][np.array(labels) == 0] >= thr)), 4),
                         "tpr_test_defect": round(float(np.mean(res["onnxruntime"][np.array(labels) == 1] >= thr)), 4)},
        "score_max_rel_diff_ort_vs_torch": float(np.max(np.abs(res["onnxruntime"] - res["pytorch"]) / np.abs(res["pytorch"]))),
    }
    out["latency_batch1"] = compare_latency(model, onnx_path, frames[0], threads)
    out["work_dir"] = str(work)
    if roc_png:
        curves = []
        colors = [(200, 80, 0), (0, 140, 0), (0, 0, 200), (160, 0, 160), (0, 160, 160), (80, 80, 80)]
        fpr, tpr, _ = roc_curve(labels, res["onnxruntime"])
        curves.append((f"all AUROC {out['auroc']['onnxruntime']:.3f}", fpr, tpr, (0, 0, 0)))
        lab, dfc, sc = np.array(labels), np.array(defects), res["onnxruntime"]
        for k, c in enumerate(out["per_class_auroc"]):
            sel = (lab == 0) | (dfc == c)
            fpr, tpr, _ = roc_curve(lab[sel], sc[sel])
            curves.append((f"{c} {out['per_class_auroc'][c]:.3f}", fpr, tpr, colors[k % len(colors)]))
        draw_roc(roc_png, curves)
        out["roc_png"] = str(roc_png)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mtd"))
    ap.add_argument("--explore", action="store_true", help="sweep levels/pooling/size variants instead of the end-to-end run")
    ap.add_argument("--sizes", default="224,256,320", help="--explore: input sizes")
    ap.add_argument("--cache", default=None, help="--explore: folder to keep extracted features in between sweeps")
    ap.add_argument("--img-size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--levels", default=",".join(map(str, DEFAULT_LEVELS)))
    ap.add_argument("--pool", default=DEFAULT_POOL, choices=list(POOLS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--contrast", default="none", choices=CONTRASTS, help="per-image contrast normalisation")
    ap.add_argument("--threads", type=int, default=2, help="threads for the latency comparison")
    ap.add_argument("--latency-only", metavar="CKPT", default=None,
                    help="only the latency comparison, for an existing checkpoint (e.g. work_dir/best.pt of a full run)")
    ap.add_argument("--json", default=None, help="also write the JSON here")
    ap.add_argument("--roc", default=None, help="write a ROC curve PNG here")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ds = load_dataset(a.data, need_test=True)
    if a.latency_only:
        from edgeano.export.onnx_export import export_onnx
        from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint

        model, ckpt = load_checkpoint(a.latency_only)
        onnx_path = export_onnx(model, Path(tempfile.mkdtemp(prefix="mtd_gaussian_")) / "gaussian.onnx", checkpoint_metadata(model, ckpt))
        frame = read_image(ds.test[0].path)
        out = {"checkpoint": a.latency_only, "img_size": list(model.preprocess.size),
               "latency_batch1": compare_latency(model, onnx_path, frame, a.threads)}
    elif a.explore:
        out = {"dataset": ds.summary(), "variants": explore(ds, [int(s) for s in a.sizes.split(",")], a.batch, a.cache)}
    else:
        levels = tuple(int(i) for i in a.levels.split(","))
        out = {"dataset": ds.summary(), "contrast": a.contrast,
               **end_to_end(ds, a.img_size, levels, a.pool, a.batch, a.threads, a.roc, a.contrast)}
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        from edgeano.fileio import write_text

        write_text(a.json, text + "\n")


if __name__ == "__main__":
    main()
