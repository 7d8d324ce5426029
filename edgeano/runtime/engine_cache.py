"""Engine cache: `edgeano run/eval/bench model.onnx` on a machine with TensorRT builds the engine
once and reuses it, keyed by what makes an engine valid: ONNX content, precision, TensorRT version,
GPU (name + compute capability) and the build options that change the plan.

    runner = cached_tensorrt_runner("model.fp16.onnx")     # ~/.cache/edgeano/engines/model.fp16.<key>.engine

Cache folder: `cache_dir`, else $EDGEANO_CACHE/engines, else ~/.cache/edgeano/engines.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, Optional

from edgeano.artifact import sidecar_path
from edgeano.errors import EdgeanoError
from edgeano.fileio import sha256_file
from edgeano.runtime.tensorrt import TensorRTRunner, device_info, import_tensorrt, tensorrt_available  # noqa: F401

BUILD_OPTIONS = ("workspace_gib", "dla_core", "max_batch", "opt_batch", "calib_data", "tf32")
IGNORED_RUNNER_OPTIONS = ("threads", "providers")  # ONNX Runtime's: meaningless for TensorRT


def default_cache_dir() -> Path:
    root = os.environ.get("EDGEANO_CACHE")
    return Path(root) / "engines" if root else Path.home() / ".cache" / "edgeano" / "engines"


def cache_key(onnx_sha256: str, precision: str, trt_version: str, device: Dict[str, str], **options) -> str:
    """16 hex chars over everything that makes an engine valid; changes when any of it changes."""
    doc = {
        "onnx": onnx_sha256, "precision": precision, "tensorrt": str(trt_version),
        "device": device["name"], "cc": str(device["compute_capability"]),
        "options": {k: (str(v) if v is not None else None) for k, v in sorted(options.items())},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def cached_engine_path(onnx_path, precision: str, key: str, cache_dir=None) -> Path:
    """The engine naming rule (trt_build.default_engine_path) plus the key: <base>.<precision>.<key>.engine."""
    from edgeano.runtime.trt_build import artifact_base

    return Path(cache_dir or default_cache_dir()) / f"{artifact_base(onnx_path)}.{precision}.{key}.engine"


def cached_tensorrt_runner(onnx_path, precision: Optional[str] = None, cache_dir=None, **kw) -> TensorRTRunner:
    """A TensorRTRunner for `onnx_path`, building the engine into the cache on first use.
    precision None = the ONNX's own (fp32, fp16 or int8 QDQ). kw: build options
    (workspace_gib, dla_core, max_batch, opt_batch, calib_data, tf32, timing_cache) and runner options (device)."""
    from edgeano.runtime.trt_build import build_engine, inspect_onnx, request_for
    from edgeano.runtime.trt_plan import plan_build

    ok, why = tensorrt_available()
    if not ok:
        raise EdgeanoError(f"backend tensorrt: {why}; use --backend onnxruntime, or run this on the Jetson/GPU machine")
    for name in IGNORED_RUNNER_OPTIONS:
        kw.pop(name, None)
    build_kw = {k: kw.pop(k) for k in list(kw) if k in BUILD_OPTIONS}
    timing_cache = kw.pop("timing_cache", None)
    device = int(kw.get("device", 0))
    info = inspect_onnx(onnx_path)  # the same checks as `edgeano build`: metadata vs graph, external data
    trt = import_tensorrt("backend tensorrt")
    plan = plan_build(trt, request_for(info, trt.__version__, precision,
                                       **{k: v for k, v in build_kw.items() if k != "workspace_gib"}))
    build_kw["max_batch"] = plan.max_batch
    key = cache_key(sha256_file(info.path), plan.precision, trt.__version__, device_info(device), **build_kw)
    engine_path = cached_engine_path(info.path, plan.precision, key, cache_dir)
    if engine_path.is_file() and sidecar_path(engine_path).is_file():
        try:
            return TensorRTRunner(engine_path, **kw)
        except EdgeanoError as e:  # e.g. a sidecar damaged by hand: rebuild rather than fail
            print(f"warning: cached engine unusable ({e}); rebuilding", file=sys.stderr)
    print(f"building a TensorRT engine for {info.path} (first run on this device; cached as {engine_path})", file=sys.stderr)
    build_engine(info.path, engine_path, precision=plan.precision, timing_cache=timing_cache, device=device, **build_kw)
    return TensorRTRunner(engine_path, **kw)
