"""CPU latency of one model through every CPU path, in one process, alternating rounds: ONNX
Runtime and OpenVINO on the FP32 ONNX, the TensorRT-form INT8 (QDQ) and the CPU-form INT8 ONNX,
OpenVINO bf16 where the CPU has it, and PyTorch eager on the checkpoint. Prints one JSON document
(and writes it with --json); docs/benchmarks/cpu.md quotes it.

    nice -n 10 .venv/bin/python benchmarks/cpu_backends.py --onnx model.onnx [--int8 trt=model.int8.onnx] \
        [--int8 cpu=model.cpu.int8.onnx] [--checkpoint best.pt] --threads 1 --rounds 7 --iters 30 [--auroc] --json out.json

Each round runs every variant for --iters timed `Engine.infer` calls on one preprocessed image
(batch 1, after a warm-up), in turn, so a change in machine load hits all of them alike; the
median of the round medians is reported, with each variant's ratio to ONNX Runtime FP32 per round
(the figure to trust on a shared machine). GMAC and the FMA peak come from edgeano.bench, as
`edgeano bench` prints them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edgeano.bench import compute_figures
from edgeano.calibration.reader import calibration_paths, load_frames
from edgeano.fileio import write_json
from edgeano.runtime.cpu import cpu_facts
from edgeano.runtime.engine import Engine

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def _int8_refused(path) -> bool:
    """The OpenVINO runner refuses INT8 on CPUs without VNNI (measured wrong there: see its module)."""
    return not cpu_facts()["int8_dot"]


def variants(a) -> dict:
    """name -> zero-argument loader of an Engine."""
    from edgeano.runtime.openvino import cpu_capabilities, openvino_available

    t = a.threads
    out = {"ort-fp32": lambda: Engine.load(a.onnx, backend="onnxruntime", threads=t)}
    ov = openvino_available()[0]
    if ov:
        out["ov-fp32"] = lambda: Engine.load(a.onnx, backend="openvino", threads=t)
        if "BF16" in cpu_capabilities():
            out["ov-bf16"] = lambda: Engine.load(a.onnx, backend="openvino", threads=t, precision="bf16")
    for spec in a.int8 or []:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).stem
        out[f"ort-{name}"] = lambda p=path: Engine.load(p, backend="onnxruntime", threads=t)
        if ov and not _int8_refused(path):
            out[f"ov-{name}"] = lambda p=path: Engine.load(p, backend="openvino", threads=t)
    if a.checkpoint:
        def torch_engine():
            import torch

            from edgeano.models.runner import engine_from_checkpoint

            torch.set_num_threads(t)
            return engine_from_checkpoint(a.checkpoint)

        out["pytorch"] = torch_engine
    return out


def auroc_of(engines: dict, data: Path) -> dict:
    """Image AUROC on data's test/ per variant, its drop in points vs ort-fp32, Spearman vs ort-fp32."""
    from edgeano.data.datasets import load_dataset
    from edgeano.evaluation.metrics import auroc, rank_correlation

    items = load_dataset(data, need_test=True).test
    frames = load_frames([t.path for t in items])
    labels = np.array([t.label for t in items])
    assert len(frames) == len(items), "an unreadable test image would misalign labels"
    scores = {k: np.concatenate([e.score(frames[i:i + 16]).scores for i in range(0, len(frames), 16)]) for k, e in engines.items()}
    ref = scores.get("ort-fp32")
    out = {"n_normal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum())}
    for k, sc in scores.items():
        out[k] = {"auroc": round(auroc(labels, sc), 5)}
        if ref is not None and k != "ort-fp32":
            out[k]["drop_points"] = round(100 * (auroc(labels, ref) - auroc(labels, sc)), 3)
            out[k]["spearman_vs_ort_fp32"] = round(rank_correlation(ref, sc), 5)
            out[k]["max_rel_diff_vs_ort_fp32"] = float(np.max(np.abs(sc - ref) / np.maximum(np.abs(ref), 1e-12)))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", required=True, type=Path, help="FP32 edgeano ONNX")
    ap.add_argument("--int8", action="append", metavar="[LABEL=]PATH",
                    help="an INT8 ONNX (edgeano calibrate [--target cpu]), run on ONNX Runtime and OpenVINO; repeatable")
    ap.add_argument("--checkpoint", type=Path, help="the .pt the ONNX was exported from: PyTorch eager too")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an image from here is the input")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time per call instead of wall time. With --threads 1 that is the work "
                         "itself, and it does not count the time other jobs hold the core: the figure for a shared machine")
    ap.add_argument("--auroc", action="store_true",
                    help="also score --data's test/ with every variant: image AUROC and its drop vs ONNX Runtime FP32")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    load = variants(a)
    if a.only:
        load = {k: v for k, v in load.items() if k in a.only.split(",")}
    engines = {k: f() for k, f in load.items()}
    frame = load_frames(calibration_paths(a.data, 1))[0]
    x = {k: e.preprocess.batch([frame]) for k, e in engines.items()}
    for k, e in engines.items():
        for _ in range(5):
            e.infer(x[k])
    rounds = {k: [] for k in engines}
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    for _ in range(a.rounds):
        for k, e in engines.items():
            t = np.empty(a.iters)
            for i in range(a.iters):
                t0 = clock()
                e.infer(x[k])
                t[i] = (clock() - t0) * 1e3
            rounds[k].append(float(np.median(t)))
    base = rounds.get("ort-fp32")
    out = {"onnx": str(a.onnx), "threads": a.threads, "clock": a.clock, "rounds": a.rounds, "iters": a.iters, "cpu": cpu_facts(),
           "loadavg": open("/proc/loadavg").read().split()[:3] if sys.platform.startswith("linux") else None, "variants": {}}
    for k, r in rounds.items():
        e = engines[k]
        med = statistics.median(r)
        v = {"backend": e.name, "precision": e.precision, "median_ms": round(med, 3), "round_medians_ms": [round(m, 3) for m in r]}
        if base:
            per_round = [b / m for b, m in zip(base, r)]  # > 1: faster than ORT FP32
            v["speedup_vs_ort_fp32"] = round(statistics.median(per_round), 3)
            v["speedup_per_round"] = [round(s, 3) for s in per_round]
        fig = compute_figures(e, med, 1, a.threads)
        v.update({k2: fig[k2] for k2 in ("gmac_per_image", "gflops", "fma_peak_gflops", "peak_share")})
        out["variants"][k] = v
    if a.auroc:
        out["auroc"] = auroc_of(engines, a.data)
    for e in engines.values():
        e.close()
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if a.json:
        write_json(a.json, json.loads(text))
    return out


if __name__ == "__main__":
    main()
