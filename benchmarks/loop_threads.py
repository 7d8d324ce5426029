"""Camera loop FPS against engine-only throughput for several inference-thread settings, in one
process, alternating rounds: what `edgeano run`'s default thread count is chosen from.

    nice -n 10 .venv/bin/python benchmarks/loop_threads.py --model model.onnx \
        --video ../shared/data/video/bottle-detection.mp4 --configs 2,2-nospin,1,default --frames 300 --rounds 6

A config is a thread count, optionally `-nospin` (ONNX Runtime's idle intra-op threads sleep instead
of spinning), or `default` (what `edgeano run` uses when --threads is not given:
edgeano.runtime.cpu.loop_runner_options). For each round and config: engine-only
(`edgeano.bench.bench`, what `edgeano bench` measures, Engine.infer on one preprocessed frame) then
the loop (`edgeano run --headless` in-process: StreamLoop on the clip, decode and preprocessing in
the capture thread, no sinks). Reported per config: medians, loop / its own engine-only per round,
and loop / the best engine-only throughput of any config (what a user compares with `edgeano bench`).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

sys.modules.setdefault("torch", None)  # the loop's path must not need torch

from edgeano.bench import bench  # noqa: E402
from edgeano.runtime.cpu import cpu_facts, loop_runner_options  # noqa: E402
from edgeano.runtime.engine import Engine  # noqa: E402
from edgeano.stream.loop import LoopConfig, StreamLoop  # noqa: E402
from edgeano.stream.sources import open_source, parse_source, quiet_opencv  # noqa: E402


def run_loop(engine, video: str, frames: int) -> dict:
    src = open_source(parse_source(source=video))
    return StreamLoop(engine, src, [], LoopConfig(max_frames=frames, loop=True, print_every_s=3600), log=lambda s: None).run()


def runner_kwargs(config: str, backend: str) -> dict:
    if config == "default":
        return loop_runner_options(backend)
    threads, _, spin = config.partition("-")
    kw = {"threads": int(threads)}
    if spin == "nospin":
        kw["spinning"] = False
    return kw


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--configs", default="2,2-nospin,1,default")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args(argv)
    quiet_opencv()
    configs = a.configs.split(",")
    engines = {c: Engine.load(a.model, backend=a.backend, **runner_kwargs(c, a.backend)) for c in configs}
    for e in engines.values():
        run_loop(e, a.video, 30)  # warm-up: sessions, decoder, caches
    eng = {c: [] for c in configs}
    loop = {c: [] for c in configs}
    stages = {}
    for _ in range(a.rounds):
        for c, e in engines.items():
            eng[c].append(bench(e, iters=a.frames, warmup=10, batch=1)["throughput_ips"])
            s = run_loop(e, a.video, a.frames)
            loop[c].append(s["fps"])
            stages[c] = s["stages_ms"]
    best_engine = max(statistics.median(v) for v in eng.values())
    out = {"model": a.model, "backend": a.backend, "video": a.video, "frames_per_round": a.frames, "rounds": a.rounds,
           "cores": cpu_facts()["cores"], "default": loop_runner_options(a.backend), "best_engine_only_ips": round(best_engine, 1),
           "configs": {}}
    for c in configs:
        ratios = [lf / e for lf, e in zip(loop[c], eng[c])]
        out["configs"][c] = {
            "runner": runner_kwargs(c, a.backend), "threads_used": getattr(engines[c].runner, "threads", None),
            "engine_only_ips": [round(x, 1) for x in eng[c]], "loop_fps": [round(x, 1) for x in loop[c]],
            "median_engine_only_ips": round(statistics.median(eng[c]), 1), "median_loop_fps": round(statistics.median(loop[c]), 1),
            "loop_over_engine_per_round": [round(r, 3) for r in ratios],
            "median_loop_over_engine": round(statistics.median(ratios), 3),
            "loop_over_best_engine": round(statistics.median(loop[c]) / best_engine, 3),
            "loop_stages_ms_last_round": stages[c],
        }
        engines[c].close()
    out["loadavg_end"] = open("/proc/loadavg").read().split()[:3] if sys.platform.startswith("linux") else None
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
