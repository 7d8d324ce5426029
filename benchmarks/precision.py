"""FP32 vs FP16 vs INT8 (ONNX Runtime, CPU) for one FP32 edgeano ONNX on MTD: image AUROC on
test/, the INT8 calibration report, and batch-1 CPU latency. Prints one JSON document (and writes
it with --json); the figures in docs/benchmarks/int8.md come from this script.

    nice -n 10 .venv/bin/python benchmarks/precision.py --onnx model.onnx --data /work/shared/data/mtd \
        --num 512 --method minmax --json /tmp/precision.json

FP16 is edgeano.export.fp16.to_fp16 (skipped when that module is absent); INT8 is
edgeano.calibration.quantize.calibrate_onnx on --num images of train/good. Latency: the
precisions take turns for --rounds rounds (so a change in machine load hits all of them), each
round --iters timed Engine.infer calls on one preprocessed image after a warm-up; medians reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.modules.setdefault("torch", None)  # none of this needs torch: prove it

from edgeano.calibration.quantize import calibrate_onnx  # noqa: E402
from edgeano.calibration.reader import calibration_paths, load_frames  # noqa: E402
from edgeano.calibration.report import score_frames  # noqa: E402
from edgeano.data.datasets import load_dataset  # noqa: E402
from edgeano.fileio import write_json  # noqa: E402
from edgeano.evaluation.metrics import auroc, rank_correlation  # noqa: E402
from edgeano.runtime.engine import Engine  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def make_variants(src: Path, data: Path, num: int, method: str, workdir: Path, float_stride=None,
                  bias_correction: bool = True) -> dict:
    paths = {"fp32": src}
    try:
        from edgeano.export.fp16 import to_fp16
    except ImportError as e:
        print(f"FP16 skipped: {e}", file=sys.stderr)
    else:
        t0 = time.time()
        paths["fp16"] = workdir / f"{src.stem}.fp16.onnx"
        to_fp16(src, paths["fp16"], frames=load_frames(calibration_paths(data, 1)))  # probe batch = exported batch (1)
        print(f"fp16 conversion {time.time() - t0:.1f} s", file=sys.stderr)
    paths["int8"] = workdir / f"{src.stem}.int8.{method}.onnx"
    t0 = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON document
        report = calibrate_onnx(src, paths["int8"], data, num=num, method=method, float_stride=float_stride,
                                bias_correction=bias_correction)
    report["wall_seconds"] = round(time.time() - t0, 1)
    return {"paths": paths, "int8_report": report}


def evaluate(paths: dict, data: Path) -> dict:
    items = load_dataset(data, need_test=True).test
    frames, labels = [], []
    for t in items:
        f = load_frames([t.path])
        if f:
            frames.append(f[0])
            labels.append(t.label)
    labels = np.asarray(labels)
    scores, out = {}, {}
    for prec, p in paths.items():
        with Engine.load(p) as eng:
            t0 = time.time()
            scores[prec], _ = score_frames(eng, frames, f"eval {prec}")
            out[prec] = {"auroc": auroc(labels, scores[prec]), "eval_seconds": round(time.time() - t0, 1)}
    for prec in paths:
        if prec != "fp32":
            out[prec]["auroc_drop_points"] = (out["fp32"]["auroc"] - out[prec]["auroc"]) * 100
            out[prec]["spearman_vs_fp32"] = rank_correlation(scores["fp32"], scores[prec])
    return {"n_normal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum()), **out}


def latency(paths: dict, data: Path, rounds: int, iters: int, threads: int) -> dict:
    frame = load_frames(calibration_paths(data, 1))[0]
    engines = {prec: Engine.load(p, threads=threads) for prec, p in paths.items()}
    x = {prec: e.preprocess.batch([frame]) for prec, e in engines.items()}
    times = {prec: [] for prec in engines}
    for prec, e in engines.items():  # warm-up
        for _ in range(5):
            e.infer(x[prec])
    for _ in range(rounds):
        for prec, e in engines.items():
            t = []
            for _ in range(iters):
                t0 = time.perf_counter()
                e.infer(x[prec])
                t.append((time.perf_counter() - t0) * 1e3)
            times[prec].append(statistics.median(t))
    for e in engines.values():
        e.close()
    out = {prec: {"median_ms": round(statistics.median(v), 2), "round_medians_ms": [round(t, 2) for t in v]} for prec, v in times.items()}
    out["setup"] = {"batch": 1, "threads": threads, "rounds": rounds, "iters_per_round": iters,
                    "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "note": "shared machine: other jobs ran at the same time; compare ratios, not absolute ms"}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", required=True, type=Path, help="FP32 edgeano ONNX (from `edgeano export`).")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MTD (MVTec layout).")
    ap.add_argument("--num", type=int, default=512, help="INT8 calibration images.")
    ap.add_argument("--method", default="minmax", help="INT8 calibration method: minmax, entropy, percentile.")
    ap.add_argument("--float-stride", type=int, default=None, help="INT8: layers at stride <= N stay float (default: per model).")
    ap.add_argument("--no-bias-correction", action="store_true", help="INT8 ablation: skip the head-input bias correction.")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for the latency runs.")
    ap.add_argument("--workdir", type=Path, default=None, help="Where the FP16/INT8 ONNX go (default: beside --onnx).")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    workdir = args.workdir or args.onnx.parent
    workdir.mkdir(parents=True, exist_ok=True)
    made = make_variants(args.onnx, args.data, args.num, args.method, workdir, args.float_stride,
                         not args.no_bias_correction)
    result = {
        "onnx": str(args.onnx), "data": str(args.data), "method": args.method, "num": args.num,
        "float_stride": made["int8_report"].get("float_stride"),
        "bias_correction": not args.no_bias_correction,
        "auroc": evaluate(made["paths"], args.data),
        "latency_cpu": latency(made["paths"], args.data, args.rounds, args.iters, args.threads),
        "int8_report": made["int8_report"],
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        write_json(args.json, json.loads(text))
    return result


if __name__ == "__main__":
    main()
