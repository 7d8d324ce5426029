"""The events schema: one JSON object per scored frame, shared by `--events`, MQTT and the HTTP API.

Documented in docs/events.md. Version 1 (`"schema": 1`); a new field is added without a version
bump, a renamed or removed one bumps it. Strict JSON: a non-finite number (a NaN score from a
broken model, an infinite threshold) is written as null, never as bare NaN/Infinity.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

EVENTS_SCHEMA = 1


@dataclass
class Scored:
    """One frame after scoring."""

    index: int  # position in its source (counts on across --loop restarts)
    timestamp: float  # wall-clock capture time, seconds since the epoch
    frame: np.ndarray  # the full BGR frame (not the ROI crop)
    score: float
    anomaly: bool
    threshold: float
    latency_ms: float  # capture -> result
    amap: Optional[np.ndarray] = None  # model-resolution anomaly map, when the model has one
    source: str = ""  # the source's name (its URI unless named)
    source_index: int = 0  # position of the source in the run's --source list
    seq: int = 0  # order in which the run scored the frame, over all sources, from 0
    peak: Optional[Dict[str, Any]] = None  # {"x", "y", "value"}: the map's maximum, in frame pixels
    area_px: Optional[int] = None  # frame pixels at or above the artifact's map threshold


def finite(v: Optional[float], digits: int) -> Optional[float]:
    """A float for JSON: rounded, or None where it is NaN or infinite."""
    if v is None:
        return None
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def event_record(s: Scored, run_id: str) -> Dict[str, Any]:
    """The schema-1 record of one scored frame (docs/events.md)."""
    rec: Dict[str, Any] = {
        "schema": EVENTS_SCHEMA, "run": run_id, "seq": s.seq, "source": s.source, "frame": s.index,
        "timestamp": round(s.timestamp, 3), "score": finite(s.score, 6), "label": "NG" if s.anomaly else "OK",
        "threshold": finite(s.threshold, 6), "latency_ms": finite(s.latency_ms, 2),
    }
    if s.peak is not None:
        rec["peak"] = {"x": int(s.peak["x"]), "y": int(s.peak["y"]), "value": finite(s.peak["value"], 6)}
    if s.area_px is not None:
        rec["area_px"] = int(s.area_px)
    return rec


def strict(obj: Any) -> Any:
    """A JSON-able copy with every non-finite float (NaN, inf) as None: for status documents."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (allow_nan=False): callers pass values through `finite` first; a stray NaN is a bug, not a line."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))
