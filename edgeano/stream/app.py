"""`edgeano run` as a library call: options -> engine, sources, sinks -> the loop -> exit code.

The CLI (edgeano/cli/run.py) parses flags into `RunOptions` and calls `run_stream`. Order matters
for the user: every flag and output path is checked first, then the model loads, then the
sources open (exit 3 if one will not), then the sinks start; outputs are finalised on every exit.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from edgeano.errors import EXIT_USAGE, EdgeanoError

Roi = Tuple[int, int, int, int]


@dataclass
class RunOptions:
    model: str
    sources: List[str] = field(default_factory=list)  # --source URIs, in order
    cameras: List[int] = field(default_factory=list)  # --camera indices (after the --source ones)
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    headless: bool = False
    save_video: Optional[str] = None
    events: Optional[str] = None
    events_only_anomalies: bool = False
    save_anomalies: Optional[str] = None
    threshold: Optional[float] = None
    roi: Optional[Roi] = None
    max_frames: Optional[int] = None
    loop: bool = False
    backend: str = "auto"
    runner: dict = field(default_factory=dict)  # runner keywords (threads, precision); no threads: loop_runner_kwargs picks
    server: Optional[str] = None  # a Triton server's URL: MODEL is then the served model's name
    reconnect_tries: int = 10
    print_every: float = 5.0
    stall_timeout: float = 10.0
    mqtt: Optional[str] = None
    opcua: Optional[str] = None
    http: Optional[str] = None
    http_token: Optional[str] = None
    open_engine: Optional[Callable] = None  # (model, backend=, threshold=, server=, **runner) -> Engine; default edgeano.loaders.open_engine


def parse_roi(text: Optional[str]) -> Optional[Roi]:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise EdgeanoError(f"--roi {text!r}: expected four integers x,y,w,h (e.g. --roi 100,50,320,240)", EXIT_USAGE)
    if x < 0 or y < 0 or w < 8 or h < 8:
        raise EdgeanoError(f"--roi {text!r}: x and y must be >= 0, w and h >= 8 pixels", EXIT_USAGE)
    return x, y, w, h


def validate(o: RunOptions) -> None:
    """Every flag check that needs no file or device, before anything is opened."""
    if not o.sources and not o.cameras:
        raise EdgeanoError("give --camera N or --source URI (e.g. --camera 0, --source clip.mp4, --source csi://0); "
                           "repeat it for several sources", EXIT_USAGE)
    for c in o.cameras:
        if c < 0:
            raise EdgeanoError(f"--camera {c}: the index must be >= 0", EXIT_USAGE)
    for name, v in (("--width", o.width), ("--height", o.height), ("--fps", o.fps), ("--max-frames", o.max_frames)):
        if v is not None and v <= 0:
            raise EdgeanoError(f"{name} must be > 0, got {v}", EXIT_USAGE)
    if o.events_only_anomalies and not o.events:
        raise EdgeanoError("--events-only-anomalies needs --events FILE.jsonl", EXIT_USAGE)
    if o.reconnect_tries < 0:
        raise EdgeanoError("--reconnect-tries must be >= 0", EXIT_USAGE)
    if not o.stall_timeout >= 0:
        raise EdgeanoError(f"--stall-timeout must be >= 0 seconds (0 = no watchdog), got {o.stall_timeout}", EXIT_USAGE)
    if o.http_token and not o.http:
        raise EdgeanoError("--http-token needs --http HOST:PORT", EXIT_USAGE)


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


def parse_sources(o: RunOptions):
    from edgeano.stream.sources import parse_source

    specs = [parse_source(source=s, width=o.width, height=o.height, fps=o.fps) for s in o.sources]
    specs += [parse_source(camera=c, width=o.width, height=o.height, fps=o.fps) for c in o.cameras]
    uris = [s.uri for s in specs]
    dup = sorted({u for u in uris if uris.count(u) > 1})
    if dup:
        raise EdgeanoError(f"source {dup[0]} is given twice; each --source/--camera must be a different source", EXIT_USAGE)
    if o.loop:
        for s in specs:
            if s.live:
                raise EdgeanoError(f"--loop restarts files and folders; {s.uri} is a live source", EXIT_USAGE)
    return specs


def check_outputs(o: RunOptions, n_sources: int) -> None:
    """Output paths, before the model loads or a source opens (exit 4 when one cannot be written)."""
    from edgeano.stream.sinks import check_video_path, check_writable, per_source_path

    if o.save_video:
        for i in range(n_sources):
            check_video_path(per_source_path(o.save_video, i, n_sources))
    if o.events:
        check_writable(o.events, "--events")
    if o.save_anomalies:
        check_writable(o.save_anomalies, "--save-anomalies", folder=True)


def build_sinks(o: RunOptions, sources, run_id: str, plans, log) -> list:
    from edgeano.stream import sinks as sk

    sinks = []
    n = len(sources)
    if not o.headless:
        if sk.display_available():
            sinks.append(sk.DisplaySink())
        else:
            log("no display (or OpenCV built without GUI): running headless")
    if o.save_video:
        for i, src in enumerate(sources):
            sinks.append(sk.VideoSink(sk.per_source_path(o.save_video, i, n), src.fps or o.fps or 30.0,
                                      live=src.spec.live, source_index=i if n > 1 else None))
    if o.events:
        sinks.append(sk.EventsSink(o.events, o.events_only_anomalies, run_id))
    if o.save_anomalies:
        sinks.append(sk.AnomalySaver(o.save_anomalies, run_id, warn=log, several_sources=n > 1))
    sinks += [plan.make(run_id, log) for plan in plans]
    return sinks


def loop_runner_kwargs(o: RunOptions) -> dict:
    """The runner keywords, with the loop's CPU defaults (edgeano.runtime.cpu.loop_runner_options:
    idle ONNX Runtime threads sleep, so the capture thread has a core to decode and preprocess the
    next frame) for what the user did not give, where the model runs locally on a CPU backend."""
    kw = dict(o.runner)
    if o.server:
        return kw
    from edgeano.loaders import is_checkpoint, resolve_model
    from edgeano.runtime.cpu import loop_runner_options
    from edgeano.runtime.engine import auto_backend

    path = resolve_model(o.model)
    if not is_checkpoint(path):
        for k, v in loop_runner_options(auto_backend(path) if o.backend == "auto" else o.backend).items():
            kw.setdefault(k, v)
    return kw


def run_stream(o: RunOptions, log: Callable[[str], None]) -> int:
    """The whole `edgeano run`; returns the exit code (0 done, 130 Ctrl-C); raises EdgeanoError otherwise."""
    from edgeano.stream.loop import LoopConfig, StreamLoop
    from edgeano.stream.sources import open_source, quiet_opencv
    from edgeano.stream.stats import LoopStats

    from edgeano.stream.sinks.network import plan_network_sinks

    validate(o)
    plans = plan_network_sinks(o)  # URLs and client libraries: pure checks first
    specs = parse_sources(o)
    check_outputs(o, len(specs))
    if o.open_engine is None:
        from edgeano.loaders import open_engine as opener
    else:
        opener = o.open_engine
    engine = opener(o.model, backend=o.backend, threshold=o.threshold, server=o.server, **loop_runner_kwargs(o))
    quiet_opencv()
    sources, sinks = [], []
    try:
        for spec in specs:
            sources.append(open_source(spec))
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        sinks = build_sinks(o, sources, run_id, plans, log)
    except BaseException:
        for s in sources:
            s.close()
        for s in sinks:
            s.close()
        engine.close()
        raise
    cfg = LoopConfig(roi=o.roi, max_frames=o.max_frames, loop=o.loop, print_every_s=o.print_every,
                     reconnect_tries=o.reconnect_tries, stall_s=o.stall_timeout)
    loop = StreamLoop(engine, sources, sinks, cfg, log=log, run_id=run_id)
    where = ", ".join(f"{s.uri} [{s.kind}{', live' if s.live else ''}]" for s in specs)
    threads = getattr(engine.runner, "threads", None)
    sleeping = ", idle ones sleeping" if threads and threads > 1 and getattr(engine.runner, "spinning", None) is False else ""
    log(f"run: {engine.name}{f' {threads} thread' + ('s' if threads > 1 else '') + sleeping if threads else ''} "
        f"({engine.meta.get('model', '?')}, threshold {engine.threshold:.4g}) on {where}")
    with SignalStop(loop.stop) as signals:
        try:
            loop.run()
        finally:
            if loop.last_summary:
                log(LoopStats.format_summary(loop.last_summary))
            engine.close()
    if signals.received:
        log(f"stopped by {signal.Signals(signals.received[0]).name}; outputs finalised")
    return signals.exit_code
