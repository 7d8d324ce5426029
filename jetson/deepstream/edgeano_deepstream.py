#!/usr/bin/env python3
"""Score every frame of one or more sources with an edgeano artifact inside DeepStream.

    edgeano export --model gaussian --format deepstream --out ds/          # on the workstation
    python3 edgeano_deepstream.py --config ds/config_infer_edgeano.txt \\
        --source file:///data/clip.mp4 --source rtsp://cam2/stream --events events.jsonl

Pipeline: uridecodebin (one per --source) -> nvvideoconvert -> nvstreammux -> nvinfer -> fakesink.
nvinfer runs the graph (network-type=100, output-tensor-meta=1); a probe on its src pad reads the
raw `score` tensor of every frame and writes edgeano's events, one JSON line per frame, in the
schema `edgeano run --events` writes (docs/events.md; `source` is the --source URI). The threshold comes from
edgeano.json beside the config. Needs DeepStream 6.x/7.x and its Python bindings (pyds); Python 3.8+.
Importing this file needs neither (CI checks it without DeepStream).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

try:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst
except (ImportError, ValueError):  # no GStreamer introspection here
    GLib = Gst = None
try:
    import pyds
except ImportError:  # DeepStream's Python bindings: only on a DeepStream machine
    pyds = None

META_NAME = "edgeano.json"
EXIT_USAGE, EXIT_SOURCE = 2, 3  # as edgeano.errors


def load_meta(config_path):
    """The artifact's metadata that `edgeano export --format deepstream` wrote beside the config."""
    path = Path(config_path).with_name(META_NAME)
    try:
        meta = json.loads(path.read_text())
        float(meta["threshold"]["value"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path}: not edgeano metadata ({e}); re-run `edgeano export --format deepstream`")
    return meta


EVENTS_SCHEMA = 1  # edgeano/stream/events.py: the schema `edgeano run` writes


def _finite(v, digits):
    v = float(v)
    return round(v, digits) if v == v and v not in (float("inf"), float("-inf")) else None  # strict JSON: null, never NaN


def event_record(run, source, frame, timestamp, score, threshold, latency_ms, seq=0):
    """One events line in edgeano's events schema (docs/events.md)."""
    return {"schema": EVENTS_SCHEMA, "run": run, "seq": int(seq), "source": source, "frame": int(frame),
            "timestamp": round(float(timestamp), 3), "score": _finite(score, 6), "label": "NG" if score >= threshold else "OK",
            "threshold": _finite(threshold, 6), "latency_ms": _finite(latency_ms, 2)}


class EventsWriter:
    """Appends whole lines; flushes at once for NG frames and at least every second otherwise."""

    def __init__(self, path, only_anomalies=False):
        self.f = open(path, "a", encoding="utf-8") if path else None
        self.only_anomalies, self.last_flush, self.lines = only_anomalies, time.monotonic(), 0

    def write(self, rec):
        if self.f is None or (self.only_anomalies and rec["label"] != "NG"):
            return
        self.f.write(json.dumps(rec, allow_nan=False, separators=(",", ":")) + "\n")
        self.lines += 1
        if rec["label"] == "NG" or time.monotonic() - self.last_flush >= 1.0:
            self.f.flush()
            self.last_flush = time.monotonic()

    def close(self):
        if self.f is not None:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


def frame_score(frame_meta):
    """The `score` output of one frame, from the tensor meta nvinfer attaches (None if absent)."""
    l_user = frame_meta.frame_user_meta_list
    while l_user is not None:
        user_meta = pyds.NvDsUserMeta.cast(l_user.data)
        if user_meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
            tensor_meta = pyds.NvDsInferTensorMeta.cast(user_meta.user_meta_data)
            for i in range(tensor_meta.num_output_layers):
                layer = pyds.get_nvds_LayerInfo(tensor_meta, i)
                if layer.layerName == "score":  # one float per frame (host copy of the output)
                    return float(ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(ctypes.c_float))[0])
        l_user = l_user.next
    return None


def make_probe(state):
    def probe(pad, info, _data):
        buf = info.get_buffer()
        if buf is None:
            return Gst.PadProbeReturn.OK
        batch_meta = pyds.gst_buffer_get_nvds_batch_meta(hash(buf))
        l_frame = batch_meta.frame_meta_list
        now = time.time()
        while l_frame is not None:
            fm = pyds.NvDsFrameMeta.cast(l_frame.data)
            score = frame_score(fm)
            if score is not None:
                ts = fm.ntp_timestamp / 1e9 if fm.ntp_timestamp else now
                rec = event_record(state["run"], state["sources"][int(fm.pad_index)], fm.frame_num, ts, score,
                                   state["threshold"], max(0.0, (now - ts) * 1e3), seq=state["frames"])
                state["events"].write(rec)
                state["frames"] += 1
                state["ng"] += rec["label"] == "NG"
            l_frame = l_frame.next
        return Gst.PadProbeReturn.OK

    return probe


def pipeline_description(config, sources, width, height):
    """gst-launch syntax for the pipeline (testable without GStreamer)."""
    n = len(sources)
    parts = [f"nvstreammux name=mux batch-size={n} width={width} height={height} batched-push-timeout=40000 "
             f"live-source={int(any(not s.startswith('file:') for s in sources))}",
             f"mux. ! nvinfer name=infer config-file-path={config} batch-size={n} ! fakesink sync=false"]
    for i, uri in enumerate(sources):
        parts.append(f"uridecodebin uri={uri} ! nvvideoconvert ! video/x-raw(memory:NVMM),format=NV12 ! mux.sink_{i}")
    return "  ".join(parts)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="edgeano anomaly scoring in a DeepStream pipeline")
    ap.add_argument("--config", required=True, help="config_infer_edgeano.txt from `edgeano export --format deepstream`")
    ap.add_argument("--source", action="append", required=True, help="URI (file:///..., rtsp://...); repeat for more")
    ap.add_argument("--events", default=None, help="append one JSON line per frame here")
    ap.add_argument("--events-only-anomalies", action="store_true")
    ap.add_argument("--width", type=int, default=1280, help="nvstreammux width")
    ap.add_argument("--height", type=int, default=720, help="nvstreammux height")
    args = ap.parse_args(argv)
    args.source = [s if "://" in s else Path(s).resolve().as_uri() for s in args.source]
    return args


def main(argv=None):
    args = parse_args(argv)
    if Gst is None or pyds is None:
        print("error: needs DeepStream's GStreamer plugins and Python bindings (pyds); see jetson/deepstream/README.md",
              file=sys.stderr)
        return EXIT_USAGE
    meta = load_meta(args.config)
    Gst.init(None)
    pipeline = Gst.parse_launch(pipeline_description(args.config, args.source, args.width, args.height))
    state = {"run": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), "threshold": float(meta["threshold"]["value"]),
             "events": EventsWriter(args.events, args.events_only_anomalies), "frames": 0, "ng": 0, "sources": list(args.source)}
    pipeline.get_by_name("infer").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, make_probe(state), None)
    loop, code = GLib.MainLoop(), [0]

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, _ = msg.parse_error()
            print(f"error: {err.message}", file=sys.stderr)
            code[0] = EXIT_SOURCE
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    except KeyboardInterrupt:
        code[0] = 130
    finally:
        pipeline.set_state(Gst.State.NULL)
        state["events"].close()
        print(f"{state['frames']} frames scored, {state['ng']} NG (threshold {state['threshold']:.6g})", file=sys.stderr)
    return code[0]


if __name__ == "__main__":
    sys.exit(main())
