"""Batch-1 latency of several exported models in one process, in alternating rounds, so each sees
the same machine load (the per-run latencies of mtd_models.py were taken hours apart on a shared
box). ONNX Runtime, one thread by default; per model: median ms (and per-round medians), MACs per
image, parameters of the graph's initializers and file size; the process's peak RSS at the end.

    nice -n 10 .venv/bin/python benchmarks/models_latency.py --threads 1 --rounds 5 \\
        --onnx ae=/tmp/mtd15/runs/ae/ae-l2/weights/best.onnx --onnx vae=.../best.onnx --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np


def graph_figures(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    from edgeano.macs import count_macs

    model = onnx.load(str(path))
    params = sum(int(np.prod(numpy_helper.to_array(t).shape)) for t in model.graph.initializer)
    macs = count_macs(model)
    return {"file_mb": round(path.stat().st_size / 2**20, 2), "initializer_params_m": round(params / 1e6, 2),
            "gmac_per_image": round(macs["macs"] / 1e9, 4) if macs.get("macs") else None}


def time_once(eng, x, seconds: float) -> float:
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 10:
        t = time.perf_counter()
        eng.infer(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per model per round")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    from edgeano.runtime.engine import Engine

    named = [tuple(s.split("=", 1)) for s in a.onnx]
    engines, inputs, report = {}, {}, {"threads": a.threads, "rounds": a.rounds, "loadavg_start": os.getloadavg(), "models": {}}
    for name, p in named:
        eng = Engine.load(Path(p), backend="onnxruntime", threads=a.threads)
        x = np.random.default_rng(0).random((1,) + eng.preprocess.input_shape, dtype=np.float32)
        for _ in range(5):
            eng.infer(x)
        engines[name], inputs[name] = eng, x
        report["models"][name] = {"path": p, "input": list(x.shape),
                                  **graph_figures(Path(p)), "round_medians_ms": []}
    for r in range(a.rounds):
        order = named if r % 2 == 0 else named[::-1]  # alternate the order too: no model always runs first
        for name, _ in order:
            report["models"][name]["round_medians_ms"].append(round(time_once(engines[name], inputs[name], a.seconds), 3))
    for m in report["models"].values():
        m["median_ms"] = round(float(np.median(m["round_medians_ms"])), 3)
    report["loadavg_end"] = os.getloadavg()
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
