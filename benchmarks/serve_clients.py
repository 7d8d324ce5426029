"""Frames/s and per-frame latency for 1, 4 and 8 concurrent clients scoring through one `edgeano
serve` (Triton, dynamic batching) against the same clients each scoring locally, in one run.

    python benchmarks/serve_clients.py --model model.onnx --frames DIR [--clients 1,4,8] [--requests 40] [--rounds 3]

`--model` is an ONNX exported with --dynamic-batch. Two servers start (`edgeano serve` in the server
environment, .venv-serve or --serve-python): one taking uint8 frames (the default), one float32,
so what travels is measured too. Each client is a thread with its own Engine scoring one frame per
call (Engine.score: preprocess, send, infer, threshold) in a loop; a local client's Engine is ONNX
Runtime in this process. Every configuration runs once per round, rounds alternate so a change in
machine load hits all of them, and the medians over rounds are reported. Each local Engine uses
--ort-threads ONNX Runtime intra-op threads (N local clients: up to N x that many cores), each
server's Engine --server-threads for all its clients. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.modules.setdefault("torch", None)  # the client path needs no torch

from edgeano.data.images import list_images, read_image  # noqa: E402
from edgeano.runtime.engine import Engine  # noqa: E402
from edgeano.runtime.triton import TritonRunner  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from linehelpers import free_ports  # noqa: E402  (one port helper for the tests and the benchmarks)


def start_server(python, model, name, input_dtype, threads, max_batch, delay_us):
    http, grpc, metrics = free_ports(3)
    args = ["serve", "--model", model, "--name", name, "--address", "127.0.0.1", "--http-port", http, "--grpc-port", grpc,
            "--metrics-port", metrics, "--threads", threads, "--max-batch", max_batch, "--max-queue-delay-us", delay_us,
            "--input-dtype", input_dtype]
    code = f"import sys; sys.argv = ['edgeano'] + {list(map(str, args))!r}; from edgeano.cli.main import main; main()"
    log = Path(f"/tmp/edgeano-serve-bench-{name}.err")
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 300
    while "serving" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"server {name} did not start: {log.read_text()[-1500:]}")
        time.sleep(0.5)
    return proc, {"http": f"http://127.0.0.1:{http}/v2/models/{name}", "grpc": f"grpc://127.0.0.1:{grpc}/v2/models/{name}"}


def run_clients(make_engine, frames, clients, requests):
    """`clients` threads, each with its own Engine, scoring `requests` single frames: fps and latencies."""
    engines = [make_engine() for _ in range(clients)]
    for e in engines:
        e.score([frames[0]])  # connect / warm up outside the timing
    lat, errors = [[] for _ in engines], []
    barrier = threading.Barrier(clients + 1)

    def client(i, eng):
        barrier.wait()
        try:
            for k in range(requests):
                t0 = time.perf_counter()
                eng.score([frames[(i * requests + k) % len(frames)]])
                lat[i].append((time.perf_counter() - t0) * 1e3)
        except Exception as e:  # reported after the round
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i, e)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for e in engines:
        e.close()
    if errors:
        raise SystemExit(f"client error: {errors[0]}")
    ms = np.concatenate([np.asarray(x) for x in lat])
    return {"fps": clients * requests / wall, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def batch_size(url, before):
    s = TritonRunner(url).statistics()["model_stats"][0]
    n, c = int(s["inference_count"]), int(s["execution_count"])
    return (n, c), (n - before[0]) / max(1, c - before[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", required=True, help="folder of images (searched recursively)")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--requests", type=int, default=40, help="frames each client scores per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-queue-delay-us", type=int, default=500)
    ap.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime intra-op threads per local Engine")
    ap.add_argument("--server-threads", type=int, default=None, help="... and in each server's Engine (default: --ort-threads)")
    ap.add_argument("--serve-python", default=os.environ.get("EDGEANO_SERVE_PYTHON", str(ROOT / ".venv-serve/bin/python")))
    a = ap.parse_args(argv)
    clients = [int(c) for c in a.clients.split(",")]
    frames = [f for f in (read_image(p) for p in list_images(a.frames, recursive=True)[:64]) if f is not None]
    servers = {dt: start_server(a.serve_python, a.model, f"bench_{dt}", dt, a.server_threads or a.ort_threads, a.max_batch, a.max_queue_delay_us)
               for dt in ("uint8", "float32")}
    configs = {"local": lambda: Engine.load(a.model, backend="onnxruntime", threads=a.ort_threads)}
    for dt, (_, urls) in servers.items():
        configs[f"triton-http-{dt}"] = (lambda u=urls["http"]: Engine.load(u))
    configs["triton-grpc-uint8"] = lambda u=servers["uint8"][1]["grpc"]: Engine.load(u)
    results = {name: {n: [] for n in clients} for name in configs}
    try:
        for r in range(a.rounds):
            for n in clients:
                for name, make in configs.items():
                    url = None if name == "local" else servers[name.rsplit("-", 1)[1]][1]["http"]
                    before = batch_size(url, (0, 0))[0] if url else None
                    res = run_clients(make, frames, n, a.requests)
                    if url:
                        res["mean_batch"] = batch_size(url, before)[1]
                    results[name][n].append(res)
                    print(f"round {r + 1} {name:18s} {n} clients: {res['fps']:.1f} frames/s, p50 {res['p50_ms']:.1f} ms, "
                          f"p95 {res['p95_ms']:.1f} ms" + (f", mean batch {res['mean_batch']:.2f}" if url else ""), file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    pre = Engine.load(a.model, backend="onnxruntime").preprocess
    summary = {name: {str(n): {k: round(statistics.median(x[k] for x in runs), 2) for k in runs[0]} for n, runs in per.items()}
               for name, per in results.items()}
    out = {"model": Path(a.model).name, "input": list(pre.input_shape), "bytes_per_frame": {"uint8": int(np.prod(pre.input_shape)),
           "float32": int(np.prod(pre.input_shape)) * 4}, "requests_per_client": a.requests, "rounds": a.rounds,
           "max_batch": a.max_batch, "max_queue_delay_us": a.max_queue_delay_us, "ort_threads": a.ort_threads, "server_threads": a.server_threads or a.ort_threads,
           "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "median": summary}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
