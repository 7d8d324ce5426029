"""Loop FPS against engine-only throughput, in one process, and the loop's memory over a long run.

    python benchmarks/loop_fps.py --model model.onnx --video clip.mp4 [--frames 600] [--rounds 3] [--rss-frames 10000]

Engine-only is `edgeano.bench.bench` (what `edgeano bench` prints: Engine.infer on a preprocessed
batch of 1 in a loop). The loop is `edgeano run --headless` in-process (StreamLoop on the video,
decode in its own thread, preprocess -> infer -> threshold per frame, no sinks). The two alternate
for --rounds rounds so a change in machine load hits both; medians are reported. With --rss-frames
the loop also runs that many frames (--loop over the clip) and VmRSS is sampled every 1000 frames.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

sys.modules.setdefault("torch", None)  # the loop's path must not need torch: prove it here too

from edgeano.bench import bench  # noqa: E402
from edgeano.loaders import open_engine  # noqa: E402
from edgeano.stream.loop import LoopConfig, StreamLoop  # noqa: E402
from edgeano.stream.sources import open_source, parse_source, quiet_opencv  # noqa: E402
from edgeano.stream.stats import rss_mb  # noqa: E402


class RssProbe:
    """A sink that records VmRSS every `every` frames (and nothing else)."""

    needs_overlay = False

    def __init__(self, every: int = 1000):
        self.every = every
        self.n = 0
        self.samples = []

    def write(self, scored, annotated) -> bool:
        self.n += 1
        if self.n == 1 or self.n % self.every == 0:
            self.samples.append((self.n, round(rss_mb() or 0.0, 1)))
        return False

    def close(self) -> None:
        pass


def run_loop(engine, video: str, frames: int, loop: bool = False, sinks=None) -> dict:
    src = open_source(parse_source(source=video))
    cfg = LoopConfig(max_frames=frames, loop=loop, print_every_s=3600)
    return StreamLoop(engine, src, sinks or [], cfg, log=lambda s: None).run()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=600, help="frames per loop round (and engine-only iterations)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's own)")
    ap.add_argument("--rss-frames", type=int, default=0, help="also run this many frames and sample RSS")
    a = ap.parse_args(argv)
    quiet_opencv()
    engine = open_engine(a.model, backend=a.backend, **({"threads": a.threads} if a.threads else {}))
    run_loop(engine, a.video, 30)  # warm-up: sessions, decoder, caches
    eng_ips, eng_pre_ips, loop_fps, loop_runs = [], [], [], []
    for _ in range(a.rounds):
        b = bench(engine, iters=a.frames, warmup=10, batch=1)
        eng_ips.append(b["throughput_ips"])
        eng_pre_ips.append(b["throughput_with_pre_ips"])
        s = run_loop(engine, a.video, a.frames, loop=True)
        loop_fps.append(s["fps"])
        loop_runs.append(s)
    out = {
        "model": a.model, "artifact": engine.meta.get("model"), "backend": engine.name,
        "input": list(engine.preprocess.input_shape), "threads": a.threads, "video": a.video, "frames_per_round": a.frames, "rounds": a.rounds,
        "engine_only_ips": [round(x, 1) for x in eng_ips], "engine_with_pre_ips": [round(x, 1) for x in eng_pre_ips],
        "loop_fps": loop_fps,
        "median_engine_only_ips": round(statistics.median(eng_ips), 1),
        "median_loop_fps": round(statistics.median(loop_fps), 1),
        "loop_over_engine": round(statistics.median(loop_fps) / statistics.median(eng_ips), 3),
        # each round's loop next to the engine-only run just before it: less sensitive to load drift
        "loop_over_engine_per_round": [round(lf / e, 3) for lf, e in zip(loop_fps, eng_ips)],
        "median_loop_over_engine_per_round": round(statistics.median(lf / e for lf, e in zip(loop_fps, eng_ips)), 3),
        "loop_stages_ms_last_round": loop_runs[-1]["stages_ms"],
    }
    if a.rss_frames:
        probe = RssProbe(1000)
        t0 = time.perf_counter()
        s = run_loop(engine, a.video, a.rss_frames, loop=True, sinks=[probe])
        out["long_run"] = {"frames": s["frames"], "seconds": round(time.perf_counter() - t0, 1), "fps": s["fps"],
                           "rss_mb_by_frame": probe.samples, "summary_rss_mb": s.get("rss_mb")}
    engine.close()
    out["loadavg_end"] = open("/proc/loadavg").read().split()[:3] if sys.platform.startswith("linux") else None
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
