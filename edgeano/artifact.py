"""The artifact's metadata: one versioned JSON document, stored in the ONNX `metadata_props`
under the key "edgeano" and copied into a TensorRT engine's sidecar JSON.

Torch-free, so the runtime reads it on a device. Example:

    {"schema": 1, "model": "gaussian", "input": {"size": [224, 224], "channels": 3, "color": "RGB",
     "mean": [...], "std": [...], "interpolation": "area", "scale": 0.00392, "layout": "NCHW"},
     "outputs": ["score"], "threshold": {"value": 41.2, "method": "fpr@0.01 held-out normal (n=76)"},
     "score_stats": {"mean": ..., "std": ..., "p50": ..., "p99": ..., "max": ..., "n": 76},
     "map": {"unit": 1.8, "threshold": 3.1, "method": "..."},    (models with an anomaly map)
     "backbone": "efficientnet-lite0", "edgeano": "0.1.0", "opset": 17,
     "train_fingerprint": "sha256:...", "precision": "fp32", "created": "2026-11-22T12:00:00Z"}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from edgeano import __version__
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EXIT_USAGE, EdgeanoError

SCHEMA = 1
METADATA_KEY = "edgeano"
REQUIRED = ("schema", "model", "input", "outputs", "threshold")
PRECISIONS = ("fp32", "fp16", "int8")
REEXPORT = "re-export it with `edgeano export`"
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 8, 4096  # px: metadata asking for more is refused before anything is allocated


def make_metadata(
    model: str,
    preprocess: Preprocess,
    outputs,
    threshold: Dict[str, Any],
    score_stats: Optional[Dict[str, Any]] = None,
    **extra: Any,
) -> Dict[str, Any]:
    meta = {
        "schema": SCHEMA,
        "model": model,
        "input": preprocess.to_dict(),
        "outputs": list(outputs),
        "threshold": dict(threshold),
        "score_stats": dict(score_stats or {}),
        "edgeano": __version__,
        "precision": "fp32",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    meta.update(extra)
    validate(meta)
    return meta


def validate(meta: Any, source: str = "artifact") -> Dict[str, Any]:
    """The one check of the versioned metadata document, run wherever it is read (ONNX, engine
    sidecar) or made: every field's type and range, so a tampered or foreign artifact fails at load
    in one line naming the file and the field, never as a TypeError at the first frame."""
    if not isinstance(meta, dict):
        raise _bad(source, "document", meta, "expected a JSON object")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise EdgeanoError(f"{source}: edgeano metadata lacks {', '.join(missing)}; re-export it with `edgeano export`")
    schema = meta["schema"]
    if not _is_int(schema) or schema < 1:
        raise _bad(source, "schema", schema, "expected a whole number >= 1")
    if schema > SCHEMA:
        raise EdgeanoError(f"{source}: metadata schema {schema} is newer than this edgeano understands ({SCHEMA}); upgrade edgeano")
    if not isinstance(meta["model"], str) or not meta["model"]:
        raise _bad(source, "model", meta["model"], "expected the model's name")
    check_input(meta["input"], source)
    outputs = meta["outputs"]
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs) or "score" not in outputs:
        raise _bad(source, "outputs", outputs, 'expected a list of output names with "score"')
    threshold = meta["threshold"]
    if not isinstance(threshold, dict) or "value" not in threshold:
        raise _bad(source, "threshold", threshold, 'expected {"value": <finite number>, "method": ...}')
    check_number(threshold["value"], f"{source}: metadata threshold.value")
    for key in ("f1_max",):
        if threshold.get(key) is not None:
            check_number(threshold[key], f"{source}: metadata threshold.{key}")
    stats = meta.get("score_stats", {})
    if not isinstance(stats, dict):
        raise _bad(source, "score_stats", stats, "expected an object of numbers")
    for key, v in stats.items():
        check_number(v, f"{source}: metadata score_stats.{key}")
    if "precision" in meta and meta["precision"] not in PRECISIONS:
        raise _bad(source, "precision", meta["precision"], f"expected one of {', '.join(PRECISIONS)}")
    if "map" in meta:
        validate_map(meta["map"], source)
    return meta


def validate_map(section: Any, source: str = "artifact") -> Dict[str, Any]:
    """meta["map"], the one definition of an anomaly map's units (read by eval's pictures and the
    camera loop's overlay, mask, peak and area: edgeano/stream/maps.py): fixed at training on
    normal images, so a map means the same on every frame (never per-frame min-max). Raw map values:

        {"unit": 1.8,        # a high quantile of normal pixels (e.g. the 99.9th): the top of normal
         "threshold": 3.1,   # pixels at or above it are defect pixels (mask, area); a normal frame stays below
         "method": "...",    # how the two were chosen, in words
         ...}                # optional numbers: "p50" (median normal pixel), "quantile", "n_images", ...

    unit and threshold finite and > 0; threshold >= unit is not required (a user may lower it)."""
    if not isinstance(section, dict):
        raise _bad(source, "map", section, "expected an object with unit, threshold and method")
    for key in ("unit", "threshold"):
        v = section.get(key)
        if not _is_number(v) or not math.isfinite(v) or v <= 0:
            raise _bad(source, f"map.{key}", v, "expected a finite number > 0 (raw map units)")
    if not isinstance(section.get("method"), str):
        raise _bad(source, "map.method", section.get("method"), "expected a string saying how unit and threshold were chosen")
    for key, v in section.items():
        if key not in ("unit", "threshold", "method") and not (isinstance(v, str) or (_is_number(v) and math.isfinite(v))):
            raise _bad(source, f"map.{key}", v, "expected a finite number or a string")
    return section


def check_input(d: Any, source: str, section: str = "input", what: str = "metadata ", hint: str = REEXPORT) -> Preprocess:
    """The preprocessing section (metadata `input`, checkpoint `preprocess`): types and ranges of
    every field, then the one Preprocess it describes."""

    def bad(field, value, why):
        return _bad(source, field, value, why, what, hint)

    if not isinstance(d, dict) or not d:
        raise bad(section, d, "expected an object with size, color, mean, std, ...")
    size = d.get("size")
    if (not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size)
            or not all(MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in size)):
        raise bad(f"{section}.size", size, f"expected [height, width], whole numbers {MIN_INPUT_SIDE}..{MAX_INPUT_SIDE}")
    for key in ("mean", "std"):
        v = d.get(key)
        if not isinstance(v, list) or not v or not all(_is_number(x) and math.isfinite(x) for x in v):
            raise bad(f"{section}.{key}", v, "expected a list of finite numbers, one per channel")
    if not all(x > 0 for x in d["std"]):
        raise bad(f"{section}.std", d["std"], "every value must be > 0")
    if "scale" in d and not (_is_number(d["scale"]) and math.isfinite(d["scale"]) and d["scale"] > 0):
        raise bad(f"{section}.scale", d["scale"], "expected a finite number > 0 (1/255 for 8-bit images)")
    for key in ("color", "interpolation", "contrast", "layout"):
        if key in d and not isinstance(d[key], str):
            raise bad(f"{section}.{key}", d[key], "expected a string")
    if d.get("layout", "NCHW") != "NCHW":
        raise bad(f"{section}.layout", d["layout"], "edgeano artifacts are NCHW")
    try:
        pre = Preprocess.from_dict(d)
    except (TypeError, ValueError) as e:
        raise EdgeanoError(f"{source}: bad {what}{section} section: {e}; {hint}")
    if "channels" in d and d["channels"] != pre.channels:
        raise bad(f"{section}.channels", d["channels"], f"color {pre.color} has {pre.channels}")
    return pre


def check_number(value: Any, name: str) -> float:
    """A finite number (not a bool, not a string), else one line naming it."""
    if not _is_number(value) or not math.isfinite(value):
        raise EdgeanoError(f"{name} is {_show(value)}: expected a finite number")
    return float(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, type(None), bool, list, dict)) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(source: str, field: str, value: Any, why: str, what: str = "metadata ", hint: str = REEXPORT) -> EdgeanoError:
    return EdgeanoError(f"{source}: {what}{field} is {_show(value)}: {why}; {hint}")


def check_io(meta: Dict[str, Any], inputs: Sequence[Tuple[str, Sequence]], outputs: Sequence[str], source: str) -> None:
    """The metadata against the network it describes, before the first frame: one input of shape
    (N, C, H, W) equal to the metadata's channels and size, and every metadata output present.

    `inputs`: (name, shape) per graph input, a dynamic dimension as -1, None or a string;
    `outputs`: the graph's output names. Shared by every runner (ONNX Runtime, TensorRT engine vs
    its sidecar, OpenVINO, Triton) and `build`, so a tampered or mismatched artifact fails in one
    line naming the file and the field, instead of allocating what the metadata asks for."""
    if len(inputs) != 1:
        raise EdgeanoError(f"{source}: the network has {len(inputs)} inputs ({', '.join(n for n, _ in inputs)}); "
                           "an edgeano artifact has exactly one", EXIT_USAGE)
    name, shape = inputs[0]
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    pre = preprocess_of(meta)
    want = (pre.channels,) + tuple(pre.size)
    if len(dims) != 4:
        raise EdgeanoError(f"{source}: network input {name!r} has shape {tuple(shape)}; expected N x {' x '.join(map(str, want))}",
                           EXIT_USAGE)
    for field, got, exp in (("input.channels", dims[1], want[0]), ("input.size[0] (height)", dims[2], want[1]),
                            ("input.size[1] (width)", dims[3], want[2])):
        if got != exp:
            raise EdgeanoError(f"{source}: metadata {field} is {exp} but the network input {name!r} has "
                               f"{'a dynamic size' if got is None else got} there; re-export the artifact", EXIT_USAGE)
    missing = [o for o in meta["outputs"] if o not in outputs]
    if "score" not in meta["outputs"] or missing:
        what = ", ".join(missing) if missing else "score"
        raise EdgeanoError(f"{source}: metadata outputs name {what}, which the network does not output "
                           f"(it has {', '.join(outputs) or 'none'})", EXIT_USAGE)


def preprocess_of(meta: Dict[str, Any]) -> Preprocess:
    return Preprocess.from_dict(meta["input"])


def score_stats(scores) -> Dict[str, float]:
    """Summary of normal-image scores, kept in the artifact for drift checks and overlays."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return {"n": 0}
    q = np.percentile(s, [1, 50, 95, 99])
    return {
        "n": int(s.size), "mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()),
        "p01": float(q[0]), "p50": float(q[1]), "p95": float(q[2]), "p99": float(q[3]), "max": float(s.max()),
    }


MAP_UNIT_QUANTILE = 0.99


def map_normalisation(maps, fpr: float = 0.01, what: str = "held-out normal") -> Dict[str, Any]:
    """meta["map"] from the anomaly maps (N, H, W, raw units) of normal images, the contract the
    overlay, events and map thresholds read: `unit` = the 99th percentile of all their pixels (a map
    divided by it reads about 1 on the hottest normal texture, on every frame alike); `threshold` =
    the (1 - fpr) quantile of the images' peak values, nudged up, so at most `fpr` of normal images
    have any pixel above it (the map's counterpart of the image threshold at 1 % FPR)."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError(f"maps must be (N, H, W) with N >= 1, got {m.shape}")
    peaks = m.reshape(m.shape[0], -1).max(1)
    thr = float(np.nextafter(np.quantile(peaks, 1.0 - fpr, method="higher"), np.inf))
    return {"unit": float(np.quantile(m, MAP_UNIT_QUANTILE)), "threshold": thr,
            "method": f"unit: p{MAP_UNIT_QUANTILE * 100:g} of {what} pixels; threshold: image-peak fpr@{fpr} "
                      f"(n={m.shape[0]} images, {m.shape[1]}x{m.shape[2]})"}


def set_onnx_metadata(model_proto, meta: Dict[str, Any]) -> None:
    """Store `meta` in an onnx.ModelProto (replacing an earlier edgeano entry)."""
    validate(meta)
    props = model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta, sort_keys=True)


def get_onnx_metadata(model_proto, source: str = "model") -> Dict[str, Any]:
    for p in model_proto.metadata_props:
        if p.key == METADATA_KEY:
            try:
                meta = json.loads(p.value)
            except json.JSONDecodeError as e:
                raise EdgeanoError(f"{source}: edgeano metadata is not valid JSON ({e})")
            return validate(meta, source)
    raise EdgeanoError(f"{source}: not an edgeano artifact (no '{METADATA_KEY}' metadata); export it with `edgeano export`")


def load_onnx(path, load_weights: bool = True):
    """onnx.load with one-line errors for missing, truncated or non-ONNX files."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise EdgeanoError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise EdgeanoError(f"{path} is not a readable ONNX model (truncated or wrong file?): {type(e).__name__}")


def read_onnx_metadata(path) -> Dict[str, Any]:
    return get_onnx_metadata(load_onnx(path, load_weights=False), source=str(path))


def sidecar_path(engine_path) -> Path:
    """`model.engine` -> `model.engine.json`: the engine file stays raw for trtexec/DeepStream."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")
