"""The line sinks and several sources, measured in one process (docs/benchmarks/line.md).

    python benchmarks/line_sinks.py --model model.onnx --video clip.mp4 [--frames 300] [--rounds 4] [--threads 1]

1. loop FPS with --mqtt (QoS 1, to a Mosquitto started here), --opcua and --http (one MJPEG viewer
   connected) all on, against no sinks: same engine, same clip, rounds alternating;
2. capture -> subscriber latency of the MQTT events (subscriber's receive time minus the event's
   capture timestamp), in the sinks-on rounds (unpaced: frames also wait in the file source's
   4-frame queue) and in a round paced at half the loop's FPS (as a live camera the loop keeps up with);
3. events/s the MQTT sink sustains: synthetic events written as fast as the loop would, QoS 1,
   counted when they reach a subscriber;
4. four sources of the clip in one loop (one batched inference call; the artifact with a dynamic
   batch) against four separate processes each running the same loop on one copy, rounds alternating.

Prints one JSON document. The Mosquitto broker and the subscriber are tests/linehelpers.py's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.modules.setdefault("torch", None)  # the loop's path must not need torch
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from linehelpers import Mosquitto, Subscriber, free_port  # noqa: E402

from edgeano.loaders import open_engine  # noqa: E402
from edgeano.stream.events import Scored  # noqa: E402
from edgeano.stream.loop import LoopConfig, StreamLoop  # noqa: E402
from edgeano.stream.sinks.http import HttpSink  # noqa: E402
from edgeano.stream.sinks.mqtt import MqttSink, parse_mqtt_url  # noqa: E402
from edgeano.stream.sinks.opcua import OpcUaSink, parse_opcua_url  # noqa: E402
from edgeano.stream.sources import open_source, parse_source, quiet_opencv  # noqa: E402


def loop_once(engine, videos, frames, sinks=(), fps=None) -> dict:
    srcs = [open_source(parse_source(source=v, fps=fps)) for v in videos]
    cfg = LoopConfig(max_frames=frames, loop=True, print_every_s=3600)
    return StreamLoop(engine, srcs, list(sinks), cfg, log=lambda s: None, run_id="bench").run()


class MjpegViewer(threading.Thread):
    """A browser stand-in: reads /stream.mjpg as fast as the server sends it."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.bytes, self.stop = url, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    while not self.stop.is_set():
                        chunk = r.read(65536)
                        if not chunk:
                            break
                        self.bytes += len(chunk)
            except OSError:
                time.sleep(0.05)


def sinks_on(broker_port, topic):
    http = HttpSink(f"127.0.0.1:{free_port()}", log=lambda s: None)
    viewer = MjpegViewer(f"http://127.0.0.1:{http.port}/stream.mjpg")
    sinks = [MqttSink(parse_mqtt_url(f"mqtt://127.0.0.1:{broker_port}/{topic}?qos=1&queue=100000"), "bench", log=lambda s: None),
             OpcUaSink(parse_opcua_url(f"opc.tcp://127.0.0.1:{free_port()}"), log=lambda s: None), http]
    return sinks, viewer


def latencies(sub, topic, since_n):
    msgs = sub.on(topic)[since_n:]
    return [(t - m["timestamp"]) * 1e3 for _, m, t, _ in msgs]


def pct(v, q):
    return round(float(np.percentile(v, q)), 1) if v else None


def measure_sinks(engine, video, frames, rounds, broker):
    topic = "bench/line"
    sub = Subscriber(broker.port, [topic], client_id="bench-sub")
    sub.subscribed.wait(10)
    off, on, lat_unpaced = [], [], []
    for _ in range(rounds):
        off.append(loop_once(engine, [video], frames)["fps"])
        n0 = len(sub.on(topic))
        sinks, viewer = sinks_on(broker.port, topic)
        viewer.start()
        s = loop_once(engine, [video], frames, sinks)
        viewer.stop.set()
        on.append(s["fps"])
        sub.wait_for(topic, n0 + frames, timeout=30)
        lat_unpaced += latencies(sub, topic, n0)
    n0 = len(sub.on(topic))
    sinks, viewer = sinks_on(broker.port, topic)
    viewer.start()
    pace = round(0.5 * statistics.median(off), 1)  # below what the loop can do: frames never wait in the file queue
    paced = loop_once(engine, [video], frames, sinks, fps=pace)
    viewer.stop.set()
    time.sleep(1.0)
    lat_paced = latencies(sub, topic, n0)
    sub.close()
    return {"loop_fps_sinks_off": off, "loop_fps_sinks_on": on,
            "median_off": statistics.median(off), "median_on": statistics.median(on),
            "on_over_off": round(statistics.median(on) / statistics.median(off), 3),
            "on_over_off_per_round": [round(a / b, 3) for a, b in zip(on, off)],
            "mqtt_latency_ms_unpaced": {"n": len(lat_unpaced), "p50": pct(lat_unpaced, 50), "p95": pct(lat_unpaced, 95)},
            "mqtt_latency_ms_paced": {"n": len(lat_paced), "p50": pct(lat_paced, 50), "p95": pct(lat_paced, 95),
                                      "paced_at_fps": pace, "loop_fps": paced["fps"]}}


def measure_mqtt_rate(broker, n=20000):
    topic = "bench/rate"
    sub = Subscriber(broker.port, [topic], client_id="rate-sub")
    sub.subscribed.wait(10)
    sink = MqttSink(parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/{topic}?qos=1&queue={n}"), "rate", log=lambda s: None)

    class Ctx:
        status = staticmethod(lambda: {})

    sink.start(Ctx())
    deadline = time.time() + 10
    while not sink.connected and time.time() < deadline:
        time.sleep(0.01)
    frame = np.zeros((2, 2, 3), np.uint8)
    t0 = time.perf_counter()
    for i in range(n):
        sink.write(Scored(i, time.time(), frame, 1.0, False, 2.0, 5.0, seq=i), None)
    t_write = time.perf_counter() - t0
    while sink.pending and time.perf_counter() - t0 < 120:
        time.sleep(0.005)
    t_acked = time.perf_counter() - t0
    got = sub.wait_for(topic, n, timeout=120)
    t_last = max(t for _, _, t, _ in got)
    first = min(t for _, _, t, _ in got)
    sink.close()
    sub.close()
    seqs = {m["seq"] for _, m, _, _ in got}
    return {"events": n, "received": len(seqs), "dropped": sink.dropped, "write_us_per_event": round(t_write / n * 1e6, 1),
            "events_per_s_acked_by_broker": round(n / t_acked, 0),
            "events_per_s_to_subscriber": round(len(seqs) / max(1e-9, (t_last - first)), 0),
            "seconds": round(t_last - first, 2)}


CHILD = """
import sys, json; sys.modules['torch'] = None
from edgeano.loaders import open_engine
from edgeano.stream.loop import LoopConfig, StreamLoop
from edgeano.stream.sources import open_source, parse_source, quiet_opencv
quiet_opencv()
eng = open_engine(sys.argv[1], backend='onnxruntime', **({'threads': int(sys.argv[4])} if sys.argv[4] != '0' else {}))
src = open_source(parse_source(source=sys.argv[2]))
s = StreamLoop(eng, src, [], LoopConfig(max_frames=int(sys.argv[3]), loop=True, print_every_s=3600), log=lambda m: None).run()
print(json.dumps({'frames': s['frames'], 'seconds': s['seconds']}))
"""


def dynamic_copy(model: str, folder: Path) -> str:
    import onnx

    from edgeano.artifact import load_onnx

    m = load_onnx(model)
    for t in list(m.graph.input) + list(m.graph.output):
        t.type.tensor_type.shape.dim[0].dim_param = "N"
    path = folder / "dynamic.onnx"
    onnx.save(m, str(path))
    return str(path)


def measure_multi(model, video, frames, rounds, threads, folder, one_run_threads):
    dyn = dynamic_copy(model, folder)
    engine = open_engine(dyn, backend="onnxruntime", **({"threads": one_run_threads} if one_run_threads else {}))
    copies = []
    for k in range(4):  # four distinct sources (one clip, four paths): the run refuses a source given twice
        p = folder / f"cam{k}{Path(video).suffix}"
        p.symlink_to(Path(video).resolve())
        copies.append(str(p))
    loop_once(engine, copies, 40)  # warm-up
    one, sep = [], []
    for _ in range(rounds):
        s = loop_once(engine, copies, 4 * frames)
        one.append(round(s["frames"] / s["seconds"], 1))
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, dyn, c, str(frames), str(threads or 0)], stdout=subprocess.PIPE, text=True)
                 for c in copies]
        outs = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - t0  # process start-up and model load included: what 4 services cost
        inner = sum(o["frames"] for o in outs) / max(o["seconds"] for o in outs)
        sep.append({"fps_wall": round(sum(o["frames"] for o in outs) / wall, 1), "fps_loops": round(inner, 1)})
    engine.close()
    sep_loops = [x["fps_loops"] for x in sep]
    return {"one_run_threads": one_run_threads, "process_threads": threads, "one_run_4_sources_fps": one, "four_processes": sep,
            "median_one_run": statistics.median(one), "median_four_processes_loops": statistics.median(sep_loops),
            "one_over_four": round(statistics.median(one) / statistics.median(sep_loops), 3),
            "batches_last_round": s["batches"], "frames_last_round": s["frames"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0 = ORT's default)")
    ap.add_argument("--one-run-threads", type=int, default=None, help="ORT threads of the 4-source run (default: --threads)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: sinks,rate,multi")
    a = ap.parse_args(argv)
    quiet_opencv()
    skip = set(filter(None, a.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="edgeano-line-bench-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    out = {"model": a.model, "video": a.video, "frames": a.frames, "rounds": a.rounds, "threads": a.threads,
           "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    try:
        engine = open_engine(a.model, backend="onnxruntime", **({"threads": a.threads} if a.threads else {}))
        loop_once(engine, [a.video], 30)  # warm-up
        if "sinks" not in skip:
            out["sinks"] = measure_sinks(engine, a.video, a.frames, a.rounds, broker)
        engine.close()
        if "rate" not in skip:
            out["mqtt_rate"] = measure_mqtt_rate(broker)
        if "multi" not in skip:
            out["multi_source"] = measure_multi(a.model, a.video, a.frames, a.rounds, a.threads, tmp,
                                              a.threads if a.one_run_threads is None else a.one_run_threads)
    finally:
        broker.stop()
    out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
