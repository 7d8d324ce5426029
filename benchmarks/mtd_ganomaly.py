"""MTD (Magnetic Tile Defects) benchmark for GANomaly and Skip-GANomaly, end to end like a user:
train with edgeano's trainer on a budget -> export ONNX (dynamic batch) -> score test/ through
the public Engine on ONNX Runtime -> image AUROC; plus CPU latency/throughput at batch 1 and 8,
and the same for the FP16 ONNX. Prints one JSON document (and writes it with --json).

    nice -n 10 .venv/bin/python benchmarks/mtd_ganomaly.py --model ganomaly --img-size 128 --width 32 \
        --epochs 25 --budget-min 18 --out /tmp/mtd-runs --json docs/benchmarks/mtd_ganomaly.json

AUROC is reported for last.pt and best.pt; the trainer now picks best.pt without test labels
(edgeano.train.selection: the last epoch), so the two agree. benchmarks/mtd_models.py measures
every learned model (GANomaly included) with the trainer's defaults, maps and INT8 too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def evaluate(onnx_path: Path, data: Path, threads: int) -> dict:
    from edgeano.evaluation import metrics
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image
    from edgeano.runtime.engine import Engine

    ds = load_dataset(data, need_test=True)
    eng = Engine.load(onnx_path, threads=threads)
    scores, labels = [], []
    for i in range(0, len(ds.test), 32):
        items = [t for t in ds.test[i:i + 32]]
        frames = [read_image(t.path) for t in items]
        keep = [(f, t.label) for f, t in zip(frames, items) if f is not None]
        res = eng.score([f for f, _ in keep])
        scores += res.scores.tolist()
        labels += [lab for _, lab in keep]
    labels, scores = np.array(labels), np.array(scores)
    thr = eng.threshold
    return {"auroc": round(metrics.auroc(labels, scores), 4), "n_test": int(labels.size),
            "f1_max": round(metrics.f1_max(labels, scores)["f1"], 4),
            "fpr_at_threshold": round(float((scores[labels == 0] >= thr).mean()), 4),
            "tpr_at_threshold": round(float((scores[labels == 1] >= thr).mean()), 4)}


def latency(onnx_path: Path, threads: int, batches=(1, 8), seconds: float = 5.0) -> dict:
    """Median wall time of runner.infer on a fixed preprocessed batch (preprocessing excluded)."""
    from edgeano.runtime.engine import Engine

    eng = Engine.load(onnx_path, threads=threads)
    c, h, w = eng.preprocess.input_shape
    out = {}
    for b in batches:
        x = np.random.default_rng(0).random((b, c, h, w), dtype=np.float32)
        for _ in range(3):
            eng.infer(x)
        times, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 10:
            t = time.perf_counter()
            eng.infer(x)
            times.append(time.perf_counter() - t)
        med = float(np.median(times))
        out[f"batch{b}"] = {"median_ms": round(med * 1e3, 2), "p90_ms": round(float(np.percentile(times, 90)) * 1e3, 2),
                            "images_per_s": round(b / med, 1), "runs": len(times)}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("ganomaly", "skip-ganomaly"), required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--channels", type=int, default=None, help="1 or 3 (default: auto, 1 for gray data)")
    ap.add_argument("--width", type=int, default=32, help="base conv width (papers: 64)")
    ap.add_argument("--nz", type=int, default=100)
    ap.add_argument("--contrast", choices=("none", "standardize"), default="none",
                    help="per-image contrast normalisation (MTD's exposure varies: standardize)")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-min", type=float, default=None, help="stop training after the epoch that passes this")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (the CPU is shared)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgeano-mtd-runs"))
    ap.add_argument("--name", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--skip-train", type=Path, default=None, help="evaluate this run folder instead of training")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    from edgeano.data.images import sample_frames
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
    from edgeano.train.loop import train

    report = {"model": a.model, "data": str(a.data), "img_size": a.img_size, "width": a.width, "contrast": a.contrast, "batch": a.batch,
              "lr": a.lr, "seed": a.seed, "threads": a.threads, "cpu_count": os.cpu_count()}
    if a.skip_train:
        run_dir = a.skip_train
    else:
        t = time.time()
        res = train(a.model, a.data, img_size=a.img_size, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed,
                    out=a.out, name=a.name, resume=a.resume, channels=a.channels, width=a.width,
                    **({"nz": a.nz} if a.model == "ganomaly" else {}),
                    contrast=a.contrast,
                    time_budget_s=a.budget_min * 60 if a.budget_min else None, progress=sys.stderr.isatty())
        run_dir = res["run_dir"]
        report.update(epochs_trained=res["epochs"], train_minutes=round(res["elapsed_s"] / 60, 1),  # all sessions of the run
                      wall_minutes_this_call=round((time.time() - t) / 60, 1),
                      test_auroc_last_epoch=res["test_auroc"])
    report["run_dir"] = str(run_dir)
    for which in ("last", "best"):
        model, ckpt = load_checkpoint(run_dir / "weights" / f"{which}.pt")
        onnx_path = run_dir / "weights" / f"{which}.onnx"
        export_onnx(model, onnx_path, checkpoint_metadata(model, ckpt), dynamic_batch=True)
        report[which] = {"epoch": ckpt["train_state"]["epoch"] if "train_state" in ckpt else None,
                         "channels": model.preprocess.channels, **evaluate(onnx_path, a.data, a.threads)}
    onnx_path = run_dir / "weights" / "last.onnx"
    fp16_path = run_dir / "weights" / "last.fp16.onnx"
    from edgeano.data.datasets import load_dataset
    from edgeano.export.fp16 import to_fp16  # imported late: the long training run may start before it exists

    fp16 = to_fp16(onnx_path, fp16_path, frames=sample_frames(load_dataset(a.data).train, 16))
    report["fp16"] = {"kept_fp32": fp16["kept_fp32"], **evaluate(fp16_path, a.data, a.threads)}
    report["latency_cpu_ort"] = {"fp32": latency(onnx_path, a.threads), "fp16": latency(fp16_path, a.threads)}
    report["onnx_mb"] = {"fp32": round(onnx_path.stat().st_size / 2**20, 2), "fp16": round(fp16_path.stat().st_size / 2**20, 2)}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if a.json:
        from edgeano.fileio import write_text

        write_text(a.json, text + "\n")
    return report


if __name__ == "__main__":
    main()
