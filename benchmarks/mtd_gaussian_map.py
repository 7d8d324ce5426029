"""The Gaussian model with its anomaly map on Magnetic Tile Defects, end to end through the public
API, for the targets of issue 14 (docs/benchmarks/gaussian_map.md). Prints one JSON document.

    nice -n 10 .venv/bin/python benchmarks/mtd_gaussian_map.py --data ../shared/data/mtd \
        --json docs/benchmarks/gaussian_map.json --plots docs/benchmarks/gaussian_map

1. fit_gaussian on train/good with the defaults (timed): the synthetic-defect estimate it reports
   is the only figure the defaults were chosen by;
2. checkpoint -> ONNX FP32 -> FP16 (to_fp16) and INT8 QDQ (calibrate_onnx, --num train images);
3. each of PyTorch, ORT FP32, FP16, INT8 evaluated on test/ with edgeano.evaluation.loop.evaluate:
   image AUROC, TPR / FPR at the artifact threshold, pixel AUROC, AUPRO, per class; for PyTorch
   also the global (Rippel) and the map-only image AUROC from the same forward pass;
4. ONNX Runtime latency, 224 px, batch 1, --threads threads: the map graph vs the score-only graph
   of the same fitted Gaussians (today's model), alternating rounds in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.evaluation.loop import evaluate, public, write_plots
from edgeano.evaluation.metrics import auroc
from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from edgeano.models.gaussian import GaussianAD
from edgeano.train.gaussian import fit_gaussian

ROOT = Path(__file__).resolve().parent.parent


def score_only_twin(model: GaussianAD) -> GaussianAD:
    """The same fitted Gaussians without the map: the graph `edgeano export` wrote before the map."""
    cfg = {k: v for k, v in model.config().items() if k not in ("map_levels", "memory_size", "map_weight")}
    twin = GaussianAD(model.preprocess, **cfg)
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("patch_map.", "fusion"))})
    return twin.eval()


def components(model: GaussianAD, ds, batch: int = 16) -> dict:
    """Image AUROC of the global score, the map maximum and the fused score (PyTorch, one pass)."""
    parts = {"global": [], "map_max": [], "fused": []}
    labels = []
    for i in range(0, len(ds.test), batch):
        items = ds.test[i:i + batch]
        frames = [read_image(t.path) for t in items]
        with torch.no_grad():
            out = model(torch.from_numpy(model.preprocess.batch(frames)))
        parts["global"].append(out["global_score"].numpy())
        parts["map_max"].append(out["anomaly_map"].amax((1, 2)).numpy())
        parts["fused"].append(out["score"].numpy())
        labels += [t.label for t in items]
    return {k: round(auroc(labels, np.concatenate(v)), 4) for k, v in parts.items()}


def latency(paths: dict, frame: np.ndarray, threads: int, rounds: int, iters: int) -> dict:
    from edgeano.runtime.engine import Engine

    engines = {k: Engine.load(p, backend="onnxruntime", threads=threads) for k, p in paths.items()}
    x = {k: e.preprocess.batch([frame]) for k, e in engines.items()}
    for k, e in engines.items():
        for _ in range(10):
            e.infer(x[k])
    times = {k: [] for k in engines}
    for _ in range(rounds):
        for k, e in engines.items():
            t = []
            for _ in range(iters):
                t0 = time.perf_counter()
                e.infer(x[k])
                t.append((time.perf_counter() - t0) * 1e3)
            times[k].append(statistics.median(t))
    base = list(paths)[0]
    out = {k: {"median_ms": round(statistics.median(v), 2), "round_medians_ms": [round(t, 2) for t in v]} for k, v in times.items()}
    for k in paths:
        out[k]["ratio_vs_" + base] = round(statistics.median([a / b for a, b in zip(times[k], times[base])]), 3)
    out["setup"] = {"batch": 1, "threads": threads, "rounds": rounds, "iters_per_round": iters,
                    "note": "rounds alternate between the graphs; the machine was shared, compare ratios"}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mtd"))
    ap.add_argument("--num", type=int, default=512, help="INT8 calibration images")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the latency rounds")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--memory", type=int, default=None, help="override the memory size (ablation)")
    ap.add_argument("--skip-precisions", action="store_true", help="FP32 only (no FP16 / INT8)")
    ap.add_argument("--checkpoint", default=None, help="a checkpoint fitted earlier (step 1 skipped): re-export and re-measure it")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plots", default=None, help="folder for the ORT FP32 eval pictures (overlay grid, ROC, histogram)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # the machine is shared: fit and evals on one thread; --threads is for the latency rounds
    ds = load_dataset(a.data, need_test=True)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mtd_gaussian_map_"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if a.checkpoint:
        ckpt, fit_s = Path(a.checkpoint), None
        meta = load_checkpoint(ckpt)[1]["meta"]
    else:
        kw = {} if a.memory is None else {"memory": a.memory}
        model, meta = fit_gaussian(ds.train, **kw)
        fit_s = time.perf_counter() - t0
        ckpt = save_checkpoint(work / "best.pt", model, meta)
    model, ck = load_checkpoint(ckpt)  # score what a user loads
    out = {"dataset": ds.summary(), "config": model.config(), "fit_seconds": fit_s and round(fit_s, 1), "checkpoint": str(ckpt), "work_dir": str(work),
           "threshold": meta["threshold"], "map": meta["map"], "synthetic_estimate": meta["synthetic"]}
    out["pytorch_components"] = components(model, ds)

    from edgeano.export.fp16 import to_fp16
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.runner import TorchRunner
    from edgeano.runtime.engine import Engine

    cmeta = checkpoint_metadata(model, ck)
    paths = {"fp32": export_onnx(model, work / "gaussian_map.onnx", cmeta)}
    twin = score_only_twin(model)
    score_only = export_onnx(twin, work / "gaussian_score_only.onnx", checkpoint_metadata(twin, {"meta": {
        "threshold": {"value": 0.0, "method": "latency twin, not for scoring"}}}))
    if not a.skip_precisions:
        from edgeano.calibration.quantize import calibrate_onnx
        from edgeano.calibration.reader import calibration_paths, load_frames

        paths["fp16"] = work / "gaussian_map.fp16.onnx"
        to_fp16(paths["fp32"], paths["fp16"], frames=load_frames(calibration_paths(a.data, 1)))
        paths["int8"] = work / "gaussian_map.int8.onnx"
        with contextlib.redirect_stdout(sys.stderr):
            rep = calibrate_onnx(paths["fp32"], paths["int8"], Path(a.data), num=a.num, eval_dir=Path(a.data))
        out["int8_report_eval"] = {k: v for k, v in rep.get("eval", {}).items() if not isinstance(v, (list, dict))}
        out["int8_report_normal"] = {k: v for k, v in rep.get("normal", {}).items() if not isinstance(v, (list, dict))}

    results = {}
    engines = {"pytorch": Engine(TorchRunner(model), cmeta)}
    engines.update({f"onnxruntime_{p}": Engine.load(path, backend="onnxruntime", threads=1) for p, path in paths.items()})
    for name, eng in engines.items():
        res = evaluate(eng, ds)
        results[name] = public(res)
        if name == "onnxruntime_fp32" and a.plots:
            out["plots"] = [str(p) for p in write_plots(res, Path(a.plots), stem="mtd", map_meta=eng.meta.get("map"))]
        print(name, json.dumps({k: results[name][k] for k in ("image_auroc", "tpr_at_threshold", "fpr_at_threshold",
                                                              "pixel_auroc", "aupro")}), file=sys.stderr, flush=True)
    out["eval"] = results
    ref = results["onnxruntime_fp32"]
    for p in ("fp16", "int8"):
        if f"onnxruntime_{p}" in results:
            r = results[f"onnxruntime_{p}"]
            out[f"{p}_drop_points"] = {"image_auroc": round((ref["image_auroc"] - r["image_auroc"]) * 100, 3),
                                       "pixel_auroc": round((ref["pixel_auroc"] - r["pixel_auroc"]) * 100, 3)}
    out["pytorch_vs_ort_image_auroc"] = round(abs(results["pytorch"]["image_auroc"] - ref["image_auroc"]), 5)
    frame = read_image(ds.test[0].path)
    out["latency_ort"] = latency({"score_only": score_only, "with_map": paths["fp32"]}, frame, a.threads, a.rounds, a.iters)
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if a.json:
        from edgeano.fileio import write_text

        write_text(a.json, text + "\n")


if __name__ == "__main__":
    main()
