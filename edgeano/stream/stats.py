"""Loop statistics in fixed memory: per-stage timings, FPS, counters and RSS.

A run may last days, so nothing grows with the frame count: each stage keeps a reservoir
sample (Vitter's algorithm R) of the whole run for the final p50/p95, and a short deque of
recent values for the periodic line.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional

import numpy as np

STAGES = ("capture", "pre", "infer", "post", "sinks")


def rss_mb() -> Optional[float]:
    """Resident set size of this process in MiB (VmRSS from /proc/self/status); None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Reservoir:
    """A uniform sample of at most `k` values from an unbounded stream."""

    def __init__(self, k: int = 4096, seed: int = 0):
        self.k = k
        self.n = 0
        self.values: List[float] = []
        self._rng = random.Random(seed)

    def add(self, v: float) -> None:
        self.n += 1
        if len(self.values) < self.k:
            self.values.append(v)
        else:
            j = self._rng.randrange(self.n)
            if j < self.k:
                self.values[j] = v

    def percentiles(self, qs=(50, 95)) -> List[float]:
        if not self.values:
            return [float("nan")] * len(qs)
        return [float(x) for x in np.percentile(np.asarray(self.values), qs)]


@dataclass
class SourceStats:
    """One source's counters (its capture thread writes bad/reconnects/state, the loop the rest)."""

    name: str
    frames: int = 0  # scored
    anomalies: int = 0
    bad: int = 0  # unreadable frames skipped
    dropped: int = 0  # live frames replaced by a newer one before the loop got to them
    reconnects: int = 0
    stalls: int = 0  # reads the watchdog gave up on
    read_ok: int = 0  # frames read (scored or dropped)
    next_index: int = 0  # the next frame's index in this source (survives a watchdog restart)
    state: str = "opening"  # opening | ok | reconnecting | ended | lost
    last_label: str = ""
    last_score: Optional[float] = None

    def as_dict(self) -> Dict:
        return {"name": self.name, "state": self.state, "frames": self.frames, "anomalies": self.anomalies,
                "bad_frames": self.bad, "dropped": self.dropped, "reconnects": self.reconnects, "stalls": self.stalls}


class LoopStats:
    """Stage timings in milliseconds, frame counters (over all sources and per source), FPS and memory."""

    def __init__(self, recent: int = 256, reservoir: int = 4096, sources: Optional[List[str]] = None):
        self.whole: Dict[str, Reservoir] = {s: Reservoir(reservoir, seed=i) for i, s in enumerate(STAGES)}
        self.recent: Dict[str, Deque[float]] = {s: deque(maxlen=recent) for s in STAGES}
        self.frame_times: Deque[float] = deque(maxlen=recent)  # completion times for the recent FPS
        self.sources: List[SourceStats] = [SourceStats(n) for n in (sources or ["source"])]
        self.frames = 0  # frames scored
        self.anomalies = 0
        self.batches = 0  # inference calls
        self.last_ng_time: Optional[float] = None  # wall clock of the last NG frame
        self.started = time.perf_counter()
        self.rss_start: Optional[float] = None
        self.rss_last: Optional[float] = None
        self.rss_max: Optional[float] = None

    def add(self, stage: str, ms: float) -> None:
        self.whole[stage].add(ms)
        self.recent[stage].append(ms)

    # totals over the sources (kept as attributes for the periodic line and old callers)
    @property
    def bad(self) -> int:
        return sum(s.bad for s in self.sources)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.sources)

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.sources)

    def frame_done(self, anomaly: bool, source: int = 0, score: Optional[float] = None) -> None:
        self.frames += 1
        self.anomalies += int(anomaly)
        src = self.sources[source]
        src.frames += 1
        src.anomalies += int(anomaly)
        src.last_label, src.last_score = ("NG" if anomaly else "OK"), score
        if anomaly:
            self.last_ng_time = time.time()
        self.frame_times.append(time.perf_counter())
        if self.frames == 1:
            self.sample_rss()
            self.rss_start = self.rss_last

    def sample_rss(self) -> None:
        r = rss_mb()
        if r is not None:
            self.rss_last = r
            self.rss_max = r if self.rss_max is None else max(self.rss_max, r)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def recent_fps(self) -> float:
        t = self.frame_times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def mean_fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """The periodic progress line (recent window)."""
        self.sample_rss()
        stages = " ".join(f"{s} {np.median(self.recent[s]):.1f}" for s in STAGES if self.recent[s])
        rss = f" | rss {self.rss_last:.0f} MB" if self.rss_last is not None else ""
        line = (f"frames {self.frames} | {self.recent_fps():.1f} fps | ms p50: {stages} | NG {self.anomalies}"
                f" | bad {self.bad} | dropped {self.dropped}{rss}")
        if len(self.sources) > 1:
            line += " | " + ", ".join(f"{s.name}: {s.frames} NG {s.anomalies} {s.state}" for s in self.sources)
        return line

    def summary(self) -> Dict:
        self.sample_rss()
        out = {
            "frames": self.frames, "anomalies": self.anomalies, "bad_frames": self.bad, "dropped": self.dropped,
            "reconnects": self.reconnects, "seconds": round(self.elapsed, 3), "fps": round(self.mean_fps(), 2),
            "batches": self.batches, "stages_ms": {}, "sources": [s.as_dict() for s in self.sources],
        }
        for s in STAGES:
            if self.whole[s].n:
                p50, p95 = self.whole[s].percentiles((50, 95))
                out["stages_ms"][s] = {"p50": round(p50, 3), "p95": round(p95, 3)}
        if self.rss_last is not None:
            out["rss_mb"] = {"start": round(self.rss_start or self.rss_last, 1), "end": round(self.rss_last, 1),
                             "max": round(self.rss_max, 1)}
        return out

    @staticmethod
    def format_summary(s: Dict) -> str:
        lines = [f"summary: {s['frames']} frames in {s['seconds']:.1f} s = {s['fps']:.1f} fps | NG {s['anomalies']}"
                 f" | bad {s['bad_frames']} | dropped {s['dropped']} | reconnects {s['reconnects']}"]
        for name, v in s["stages_ms"].items():
            lines.append(f"  {name:<8} p50 {v['p50']:8.2f} ms   p95 {v['p95']:8.2f} ms")
        if "rss_mb" in s:
            r = s["rss_mb"]
            lines.append(f"  rss      start {r['start']:.0f} MB   end {r['end']:.0f} MB   max {r['max']:.0f} MB")
        if len(s.get("sources", [])) > 1:
            for src in s["sources"]:
                lines.append(f"  source {src['name']}: {src['frames']} frames | NG {src['anomalies']} | bad {src['bad_frames']}"
                             f" | dropped {src['dropped']} | reconnects {src['reconnects']} | {src['state']}")
        for name, v in s.get("sinks", {}).items():
            fails = f" | {v['failures']} failures" if v.get("failures") else ""
            lines.append(f"  sink {name}: {v['state']}{fails}")
        return "\n".join(lines)
