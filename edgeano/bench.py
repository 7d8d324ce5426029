"""Engine-only timing: preprocessing and inference of a fixed batch, many times.

The input is real: crops of the bundled texture photo, or images from --data. Times are
wall-clock per call; throughput = batch / mean latency."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from edgeano.data.datasets import good_frames
from edgeano.data.synthetic import texture_frames
from edgeano.runtime.cpu import cpu_facts, fma_peak_gflops
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


def onnx_of(engine: Engine) -> Optional[Path]:
    """The ONNX graph the engine runs (its file, or the one a TensorRT engine was built from, where present)."""
    path = getattr(engine.runner, "path", None)
    if path is not None and Path(path).suffix.lower() == ".onnx":
        return Path(path)
    built_from = (engine.meta.get("tensorrt") or {}).get("onnx")
    return Path(built_from) if built_from and Path(built_from).is_file() else None


def compute_figures(engine: Engine, infer_ms: float, batch: int, threads: Optional[int]) -> Dict:
    """GMAC per image (from the ONNX graph), achieved GFLOP/s (2 FLOP per MAC) and their share of
    the CPU's FP32 FMA peak for the threads used (None where a part cannot be read)."""
    from edgeano.macs import count_macs

    out: Dict = {"gmac_per_image": None, "gflops": None, "fma_peak_gflops": None, "peak_share": None}
    onnx_path = onnx_of(engine)
    if onnx_path is None:
        return out
    macs = count_macs(onnx_path)
    out["gmac_per_image"] = macs["macs"] / 1e9
    out["gmac_by_op"] = {k: v / 1e9 for k, v in macs["by_op"].items()}
    out["gflops"] = 2 * macs["macs"] * batch / (infer_ms * 1e6)
    if getattr(engine.runner, "on_cpu", False):
        facts = cpu_facts()
        out["cpu_facts"] = facts
        out["fma_peak_gflops"] = fma_peak_gflops(threads, facts)
        if out["fma_peak_gflops"]:
            out["peak_share"] = out["gflops"] / out["fma_peak_gflops"]
    return out


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
    threads = getattr(engine.runner, "threads", None)
    return {
        "backend": engine.name,
        "model": engine.meta.get("model"),
        "precision": engine.precision,  # what the runner computed in (e.g. OpenVINO's pinned f32 or bf16)
        "artifact_precision": engine.meta.get("precision", "fp32"),
        "threads": threads,
        "input": list(x.shape),
        "batch": batch,
        "iters": iters,
        "infer_ms": _pct(inf),
        "preprocess_ms": _pct(pre),
        "throughput_ips": float(batch * 1e3 / inf.mean()),
        "throughput_with_pre_ips": float(batch * 1e3 / (inf + pre).mean()),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        **compute_figures(engine, float(inf.mean()), batch, threads),
    }


def format_compute(r: Dict) -> Optional[str]:
    if r.get("gmac_per_image") is None:
        return None
    line = f"  compute    {r['gmac_per_image']:.3f} GMAC/image, {r['gflops']:.1f} GFLOP/s achieved"
    f = r.get("cpu_facts") or {}
    if r.get("peak_share") is not None:
        n = min(int(r.get("threads") or f["cores"]), f["cores"])
        line += (f" = {100 * r['peak_share']:.0f} % of the FP32 FMA peak {r['fma_peak_gflops']:.0f} GFLOP/s "
                 f"({n} core{'s' if n > 1 else ''} x {f['clock_ghz']:.2f} GHz x {f['flop_per_cycle']} FLOP/cycle, {f['isa']}; "
                 f"clock from {f['clock_source']})")
    return line


def format_bench(r: Dict) -> str:
    i, p = r["infer_ms"], r["preprocess_ms"]
    prec = r["precision"] if r["precision"] == r.get("artifact_precision", r["precision"]) else \
        f"{r['artifact_precision']} artifact, computed in {r['precision']}"
    lines = [f"{r['backend']} {r['model']} {prec} input {tuple(r['input'])}, {r['iters']} iters"
             + (f", {r['threads']} thread{'s' if r['threads'] > 1 else ''}" if r.get("threads") else ""),
             f"  infer      mean {i['mean']:.2f} ms  p50 {i['p50']:.2f}  p95 {i['p95']:.2f}",
             f"  preprocess mean {p['mean']:.2f} ms  p50 {p['p50']:.2f}  p95 {p['p95']:.2f}",
             f"  throughput {r['throughput_ips']:.1f} img/s engine-only, {r['throughput_with_pre_ips']:.1f} img/s with preprocessing"]
    compute = format_compute(r)
    return "\n".join(lines + ([compute] if compute else []))
