"""Engine-only timing: preprocessing and inference of a fixed batch, many times.

The input is real: crops of the bundled texture photo, or images from --data. Times are
wall-clock per call; throughput = batch / mean latency."""

from __future__ import annotations

import os
import platform
import time
from typing import Dict, Optional

import numpy as np

from edgeano.data.datasets import good_frames
from edgeano.data.synthetic import texture_frames
from edgeano.errors import EdgeanoError
from edgeano.runtime.engine import Engine


def _frames(engine: Engine, batch: int, data: Optional[str]):
    if not data:
        return texture_frames(batch, max(engine.preprocess.size))
    frames = good_frames(data, batch)
    if not frames:  # timing the bundled texture instead would be a silent lie about --data
        raise EdgeanoError(f"--data {data}: no readable images (every file failed to decode)")
    return (frames * batch)[:batch]


def _pct(ms: np.ndarray) -> Dict[str, float]:
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "min": float(ms.min())}


def bench(engine: Engine, iters: int = 100, warmup: int = 10, batch: int = 1, data: Optional[str] = None) -> Dict:
    frames = _frames(engine, batch, data)
    x = engine.preprocess.batch(frames)
    for _ in range(warmup):
        engine.infer(x)
    pre = np.empty(iters)
    inf = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        x = engine.preprocess.batch(frames)
        t1 = time.perf_counter()
        engine.infer(x)
        t2 = time.perf_counter()
        pre[i], inf[i] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    return {
        "backend": engine.name,
        "model": engine.meta.get("model"),
        "precision": engine.meta.get("precision", "fp32"),
        "input": list(x.shape),
        "batch": batch,
        "iters": iters,
        "infer_ms": _pct(inf),
        "preprocess_ms": _pct(pre),
        "throughput_ips": float(batch * 1e3 / inf.mean()),
        "throughput_with_pre_ips": float(batch * 1e3 / (inf + pre).mean()),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def format_bench(r: Dict) -> str:
    i, p = r["infer_ms"], r["preprocess_ms"]
    return (f"{r['backend']} {r['model']} {r['precision']} input {tuple(r['input'])}, {r['iters']} iters\n"
            f"  infer      mean {i['mean']:.2f} ms  p50 {i['p50']:.2f}  p95 {i['p95']:.2f}\n"
            f"  preprocess mean {p['mean']:.2f} ms  p50 {p['p50']:.2f}  p95 {p['p95']:.2f}\n"
            f"  throughput {r['throughput_ips']:.1f} img/s engine-only, {r['throughput_with_pre_ips']:.1f} img/s with preprocessing")
