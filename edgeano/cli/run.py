"""`edgeano run`: score every frame of a camera, stream, video file or image folder.

Exit codes (edgeano.errors, README "Exit codes"): 0 finished (end of file, --max-frames, `q`, SIGTERM),
130 SIGINT (Ctrl-C), 3 the source will not open or a live source stayed lost after --reconnect-tries
attempts, 2 bad flag or model, 4 an output could not be written, 1 a runtime failure. Outputs are
finalised in every case.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Optional, Tuple

import click

from edgeano.cli.common import (FINITE, POSITIVE, Threads, backend_option, friendly_errors, output_file, precision_option,
                                runner_options, server_option)
from edgeano.errors import EdgeanoError


def parse_roi(text: Optional[str]) -> Optional[Tuple[int, int, int, int]]:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise EdgeanoError(f"--roi {text!r}: expected four integers x,y,w,h (e.g. --roi 100,50,320,240)")
    if x < 0 or y < 0 or w < 8 or h < 8:
        raise EdgeanoError(f"--roi {text!r}: x and y must be >= 0, w and h >= 8 pixels")
    return x, y, w, h


def validate(camera, source, width, height, fps, roi, max_frames, events, events_only_anomalies, reconnect_tries):
    """Every flag check that needs no file or device, before anything is opened."""
    if (camera is None) == (source is None):
        raise EdgeanoError("give exactly one of --camera N or --source URI (e.g. --camera 0, --source clip.mp4, --source csi://0)")
    if camera is not None and camera < 0:
        raise EdgeanoError(f"--camera {camera}: the index must be >= 0")
    for name, v in (("--width", width), ("--height", height), ("--fps", fps), ("--max-frames", max_frames)):
        if v is not None and v <= 0:
            raise EdgeanoError(f"{name} must be > 0, got {v}")
    if events_only_anomalies and not events:
        raise EdgeanoError("--events-only-anomalies needs --events FILE.jsonl")
    if reconnect_tries < 0:
        raise EdgeanoError("--reconnect-tries must be >= 0")
    return parse_roi(roi)


class SignalStop:
    """SIGINT/SIGTERM -> stop the loop cleanly (outputs finalised); a second Ctrl-C aborts at once."""

    def __init__(self, stop):
        self.stop = stop
        self.received = []
        self.previous = {}

    def _handler(self, signum, frame):
        self.received.append(signum)
        if signum == signal.SIGINT and self.received.count(signal.SIGINT) > 1:
            raise KeyboardInterrupt
        self.stop()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self.previous.items():
            signal.signal(sig, old)

    @property
    def exit_code(self) -> int:
        return 130 if signal.SIGINT in self.received else 0


def loop_runner_kwargs(model: str, backend: str, precision: str, threads) -> dict:
    """--backend/--precision/--threads, with the loop's thread default (edgeano.runtime.cpu.loop_runner_options)
    where no --threads was given and the model runs on a CPU backend."""
    kw = runner_options(backend, precision, threads)
    if threads is None:
        from edgeano.loaders import is_checkpoint, resolve_model
        from edgeano.runtime.cpu import loop_runner_options
        from edgeano.runtime.engine import auto_backend

        path = resolve_model(model)
        if not is_checkpoint(path):
            kw.update(loop_runner_options(auto_backend(path) if backend == "auto" else backend))
    return kw


def log(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("run")
@click.option("--model", "-m", required=True, help="Artifact: .onnx, .engine, or a model name (newest runs/<name>/).")
@click.option("--camera", type=int, default=None, help="V4L2 camera index (/dev/videoN).")
@click.option("--source", "-s", default=None,
              help="URI: /dev/videoN, v4l2:///dev/videoN, csi://N, rtsp://..., a video file, an image folder, or a GStreamer pipeline ('... ! appsink' or gst://...).")
@click.option("--width", type=int, default=None, help="Requested capture width (cameras, csi://).")
@click.option("--height", type=int, default=None, help="Requested capture height (cameras, csi://).")
@click.option("--fps", type=POSITIVE, default=None, help="Requested camera FPS; for files/folders: play at this rate instead of as fast as possible.")
@click.option("--headless", is_flag=True, help="No window (the default when there is no display or OpenCV has no GUI).")
@click.option("--save-video", type=click.Path(dir_okay=False), default=None, help="Annotated video (.mp4/.avi/.mkv), finalised on exit.")
@click.option("--events", type=click.Path(dir_okay=False), default=None, callback=output_file(), help="Append one JSON line per frame to this file.")
@click.option("--events-only-anomalies", is_flag=True, help="Write only NG frames to --events.")
@click.option("--save-anomalies", type=click.Path(file_okay=False), default=None, help="Save NG frames and their heatmaps as JPEG here.")
@click.option("--threshold", type=FINITE, default=None, help="Override the artifact's threshold (score >= threshold is NG).")
@click.option("--roi", default=None, help="Score only this x,y,w,h region of the frame.")
@click.option("--max-frames", type=int, default=None, help="Stop after this many scored frames.")
@click.option("--loop", "loop_", is_flag=True, help="Restart a video file or folder at its end.")
@backend_option
@precision_option
@click.option("--threads", type=Threads(), default=None,
              help="CPU inference threads (ONNX Runtime / OpenVINO). Default: one core fewer than the machine has, "
                   "leaving one to decode and preprocess the next frame.")
@server_option
@click.option("--reconnect-tries", type=int, default=10, show_default=True,
              help="Live source lost: reconnect with backoff 0.5 s doubling to 30 s, give up (exit 3) after this many tries.")
@click.option("--print-every", type=POSITIVE, default=5.0, show_default=True, help="Seconds between progress lines (stderr).")
@friendly_errors
def command(model, camera, source, width, height, fps, headless, save_video, events, events_only_anomalies, save_anomalies,
            threshold, roi, max_frames, loop_, backend, precision, threads, server, reconnect_tries, print_every):
    """Score every frame from a camera, stream, video file or image folder.

    \b
    edgeano run --model model.onnx --camera 0
    edgeano run --model model.engine --source csi://0 --save-video out.mp4 --events events.jsonl
    edgeano run --model model.onnx --source clip.mp4 --headless --roi 100,50,320,240

    Exit codes: 0 done (end of file, --max-frames, q, SIGTERM), 130 Ctrl-C, 3 the source will not
    open or stayed lost after --reconnect-tries, 2 bad flag or model, 4 an output not written,
    1 a runtime failure. Outputs are finalised in every case.
    """
    from edgeano.loaders import open_engine
    from edgeano.stream import sinks as sk
    from edgeano.stream.loop import LoopConfig, StreamLoop
    from edgeano.stream.sources import open_source, parse_source, quiet_opencv
    from edgeano.stream.stats import LoopStats

    roi_box = validate(camera, source, width, height, fps, roi, max_frames, events, events_only_anomalies, reconnect_tries)
    if save_video:
        sk.check_video_path(save_video)
    spec = parse_source(camera, source, width, height, fps)
    if loop_ and spec.live:
        raise EdgeanoError(f"--loop restarts files and folders; {spec.uri} is a live source")

    kw = runner_options(backend, precision, threads) if server else loop_runner_kwargs(model, backend, precision, threads)
    engine = open_engine(model, backend=backend, threshold=threshold, server=server, **kw)
    quiet_opencv()
    src = open_source(spec)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    sinks = []
    try:
        if not headless:
            if sk.display_available():
                sinks.append(sk.DisplaySink())
            else:
                log("no display (or OpenCV built without GUI): running headless")
        if save_video:
            sinks.append(sk.VideoSink(save_video, src.fps or fps or 30.0))
        if events:
            sinks.append(sk.EventsSink(events, events_only_anomalies, run_id))
        if save_anomalies:
            sinks.append(sk.AnomalySaver(save_anomalies, run_id, warn=log))
    except BaseException:
        src.close()
        for s in sinks:
            s.close()
        raise

    cfg = LoopConfig(roi=roi_box, max_frames=max_frames, loop=loop_, print_every_s=print_every, reconnect_tries=reconnect_tries)
    loop = StreamLoop(engine, src, sinks, cfg, log=log)
    threads_used = getattr(engine.runner, "threads", None)
    log(f"run: {engine.name}{f' {threads_used} thread' + ('s' if threads_used > 1 else '') if threads_used else ''} "
        f"({engine.meta.get('model', '?')}, threshold {engine.threshold:.4g}) on {spec.uri} "
        f"[{spec.kind}{', live' if spec.live else ''}]")
    with SignalStop(loop.stop) as signals:
        try:
            loop.run()
        finally:
            if loop.last_summary:
                log(LoopStats.format_summary(loop.last_summary))
            engine.close()
    if signals.received:
        log(f"stopped by {signal.Signals(signals.received[0]).name}; outputs finalised")
    sys.exit(signals.exit_code)
