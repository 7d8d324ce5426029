"""Build a TensorRT engine from an edgeano ONNX; write it raw (trtexec/DeepStream load it) plus
its sidecar JSON (`model.engine.json`: the artifact metadata + TensorRT version, GPU, precision,
ONNX sha256, and every build decision).

What the build does per TensorRT version (flags, FP32 islands, profile, calibration) is decided by
the pure plan in `trt_plan.py`, tested for 8.5, 8.6, 10.x and 11 without a GPU; this module reads
the ONNX, carries the plan out on the device and writes the result.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from edgeano.artifact import check_io, get_onnx_metadata, load_onnx, preprocess_of, sidecar_path
from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
from edgeano.fileio import sha256_file, write_bytes, write_json
from edgeano.runtime.tensorrt import _Logger, cuda_context, device_info, import_tensorrt
from edgeano.runtime.trt_plan import PRECISIONS, BuildPlan, BuildRequest, fp32_layers, plan_build
from edgeano.runtime.trt_plan import resolve_precision  # noqa: F401 - re-exported: tests and older callers import it here


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- what can be checked without TensorRT ---------------------------------------------------------
@dataclass
class OnnxInfo:
    path: Path
    meta: Dict
    precision: str  # the artifact's: fp32, fp16 or int8 (QDQ)
    input_name: str
    input_shape: Tuple  # batch dim is -1 when dynamic
    head_nodes: Tuple[str, ...] = ()  # the scoring head (edgeano.calibration.graph rule): kept FP32 around FP16
    node_names: Tuple[str, ...] = ()

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] == -1


def inspect_onnx(path) -> OnnxInfo:
    """The edgeano metadata and input of an ONNX file (graph only, weights not loaded), checked the
    way every runner checks an artifact (`check_io`), external data located as the ONNX loader does."""
    from edgeano.calibration.graph import head_nodes

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise EdgeanoError(f"{path}: expected an .onnx file exported by `edgeano export`", EXIT_USAGE)
    model = load_onnx(path, load_weights=False)
    meta = get_onnx_metadata(model, str(path))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    shapes = [(i.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim))
              for i in inputs]
    check_io(meta, shapes, [o.name for o in model.graph.output], str(path))
    name, shape = shapes[0]
    if -1 in shape[1:]:
        raise EdgeanoError(f"{path}: input {name} has shape {shape}; expected NCHW with only the batch dynamic", EXIT_USAGE)
    precision = str(meta.get("precision", "fp32")).lower()
    if precision not in PRECISIONS:
        raise EdgeanoError(f"{path}: unknown precision {precision!r} in its metadata (expected {', '.join(PRECISIONS)})",
                           EXIT_USAGE)
    if (meta.get("calibration") or {}).get("target") == "cpu":
        raise EdgeanoError(f"{path} is the CPU form of INT8 (asymmetric, for ONNX Runtime/OpenVINO on x86); TensorRT needs "
                           "the TensorRT form: edgeano calibrate FP32.onnx --data DIR (without --target cpu)", EXIT_USAGE)
    check_external_data(model, path)
    names = tuple(n.name for n in model.graph.node)
    head = tuple(head_nodes(model)) if all(names) and len(set(names)) == len(names) else ()
    return OnnxInfo(path, meta, precision, name, shape, head, names)


def check_external_data(model, path: Path) -> None:
    """TensorRT's parser reads an ONNX's external weight files itself, with no location check: check
    first that every location is a relative path inside the model's folder, then run the ONNX
    loader's own checks (onnx.load: location, file present, offsets and lengths within it), before
    any path reaches TensorRT. Graphs without external data cost nothing here."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    external = [t for t in tensors if uses_external_data(t)]
    if not external:
        return
    folder = os.path.realpath(path.parent)
    for t in external:
        location = next((kv.value for kv in t.external_data if kv.key == "location"), "")
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise EdgeanoError(f"{path}: its external weight data is refused (tensor {t.name!r} points outside "
                               f"the model's folder: {location!r})", EXIT_USAGE)
    try:
        onnx.load(str(path), load_external_data=True)
    except Exception as e:  # noqa: BLE001 - onnx raises ValidationError, OSError, ValueError...: one line for all
        raise EdgeanoError(f"{path}: its external weight data is refused ({str(e).splitlines()[0][:200]})", EXIT_USAGE)


def default_engine_path(onnx_path, precision: str) -> Path:
    """The one engine naming rule: <base>.<precision>.engine beside the ONNX, where base is the ONNX
    name without .onnx and without a precision suffix: best.onnx, best.fp16.onnx -> best.fp16.engine."""
    return Path(onnx_path).with_name(f"{artifact_base(onnx_path)}.{precision}.engine")


def artifact_base(path) -> str:
    """best.onnx, best.fp16.onnx, best.int8.onnx, best.fp16.engine -> "best"."""
    stem = Path(path).stem
    base, _, last = stem.rpartition(".")
    return base if base and last in PRECISIONS else stem


def make_sidecar(info: OnnxInfo, precision: str, how: str, trt_version: str, device: Dict[str, str], engine_bytes: int,
                 **build) -> Dict:
    """The engine's sidecar: the ONNX's metadata (preprocessing, threshold, golden reference, ...)
    with the engine's precision, plus what the engine is bound to (TensorRT version, GPU), came from
    (ONNX sha256) and how it was built (`build`: max_batch, dla_core, ..., plan: every decision)."""
    side = dict(info.meta)
    side["precision"] = precision
    side["tensorrt"] = {
        "schema": 1, "version": str(trt_version), "device": device["name"], "compute_capability": device["compute_capability"],
        "onnx": str(info.path), "onnx_sha256": sha256_file(info.path), "how": how, "dynamic_batch": info.dynamic_batch,
        "engine_bytes": int(engine_bytes), "built": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    side["tensorrt"].update(build)
    return side


# -- the build ------------------------------------------------------------------------------------
class _Heartbeat:
    """A line every `every` seconds while TensorRT builds (minutes on a Jetson, silent otherwise)."""

    def __init__(self, what: str, every: float = 30.0):
        self.what, self.every, self.done = what, every, threading.Event()
        self.start = time.monotonic()

    def __enter__(self):
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self):
        while not self.done.wait(self.every):
            log(f"  {self.what}: {time.monotonic() - self.start:.0f} s ...")

    def __exit__(self, *exc):
        self.done.set()


def build_engine(onnx_path, engine_path, precision: Optional[str] = None, workspace_gib: float = 2, dla_core: Optional[int] = None,
                 max_batch: int = 1, timing_cache=None, calib_data=None, opt_batch: Optional[int] = None, tf32: bool = False,
                 device: int = 0) -> Dict:
    """Build on CUDA device `device`, write engine + sidecar atomically, return the sidecar dict.
    precision None = the ONNX's own (fp32, FP16 ONNX -> fp16, QDQ ONNX -> int8)."""
    info = inspect_onnx(onnx_path)
    trt = import_tensorrt("building an engine")  # one-line error where it is missing
    if not (workspace_gib > 0 and workspace_gib != float("inf")):  # NaN fails both comparisons
        raise EdgeanoError(f"--workspace {workspace_gib}: must be a number of GiB > 0", EXIT_USAGE)
    plan = plan_build(trt, request_for(info, trt.__version__, precision, max_batch, opt_batch, dla_core, calib_data, tf32))
    dev = device_info(device)
    with cuda_context(device):  # TensorRT builds on the current context's device; the calibrator's buffers live there
        return _build(trt, info, plan, Path(engine_path), workspace_gib, timing_cache, calib_data, dev)


def request_for(info: OnnxInfo, trt_version: str, precision=None, max_batch=1, opt_batch=None, dla_core=None, calib_data=None,
                tf32=False) -> BuildRequest:
    return BuildRequest(trt_version, info.precision, tuple(info.input_shape), precision, int(max_batch), opt_batch, dla_core,
                        calib_data is not None, bool(tf32), info.head_nodes)


def _build(trt, info: OnnxInfo, plan: BuildPlan, engine_path: Path, workspace_gib, timing_cache, calib_data, dev) -> Dict:
    log(f"building {plan.precision} engine from {info.path} with TensorRT {trt.__version__} on {dev['name']} "
        f"(sm {dev['compute_capability']}), max batch {plan.max_batch}")
    for line in plan.decisions:
        log(f"  {line}")
    logger = _Logger.get(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(plan.network_flag_bits())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(info.path)):
        for i in range(parser.num_errors):
            log(f"  onnx parser: {parser.get_error(i)}")
        raise EdgeanoError(f"TensorRT {trt.__version__} cannot parse {info.path} ({parser.num_errors} error(s) above)", EXIT_ERROR)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for flag in plan.builder_flags:
        config.set_flag(flag)
    for flag in plan.cleared_flags:
        config.clear_flag(flag)
    if plan.precision != "fp32" and not plan.strongly_typed and not builder.platform_has_fast_fp16:
        log("  note: this GPU has no fast FP16; the engine will still be built but may not be faster")
    pinned = _pin_fp32(trt, network, plan, info)
    if plan.profile:
        profile = builder.create_optimization_profile()
        profile.set_shape(info.input_name, *plan.profile)
        config.add_optimization_profile(profile)
    # calibrator and timing cache stay referenced to the end: TensorRT holds only raw pointers to them.
    calibrator = _attach_calibrator(trt, builder, config, info, plan, engine_path, calib_data) if plan.calibrate else None
    if plan.dla_core is not None:
        _use_dla(trt, builder, config, plan)
    timing = _load_timing_cache(config, timing_cache)

    t0 = time.monotonic()
    with _Heartbeat("building"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeanoError(f"TensorRT could not build an engine from {info.path} (see the TensorRT errors above)", EXIT_ERROR)
    seconds = time.monotonic() - t0
    if timing_cache:
        write_bytes(timing_cache, bytes(timing.serialize()))  # the attached cache, updated by the build
        log(f"  saved timing cache {timing_cache}")
    del calibrator

    data = bytes(serialized)
    side = make_sidecar(info, plan.precision, plan.how, trt.__version__, dev, len(data), max_batch=plan.max_batch,
                        dla_core=plan.dla_core, workspace_gib=workspace_gib, build_seconds=round(seconds, 1),
                        plan=dict(plan.sidecar(), pinned_fp32_layers=pinned))
    write_bytes(engine_path, data)  # engine first: a sidecar never describes a missing engine
    write_json(sidecar_path(engine_path), side)
    log(f"wrote {engine_path} ({len(data) / 1e6:.1f} MB) and {sidecar_path(engine_path).name} in {seconds:.0f} s")
    return side


def _pin_fp32(trt, network, plan: BuildPlan, info: OnnxInfo) -> int:
    """Pin the plan's FP32 islands (layer compute and output types FLOAT); returns how many."""
    if plan.fp32_islands == "none":
        return 0
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [(layer.name, layer.type.name, [layer.get_output(j).dtype.name for j in range(layer.num_outputs)])
                 for layer in layers]
    chosen = set(fp32_layers(described, plan.fp32_islands, plan.fp32_nodes, info.node_names))
    for layer in layers:
        if layer.name in chosen:
            layer.precision = trt.DataType.FLOAT
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.DataType.FLOAT)
    log(f"  kept {len(chosen)} layer(s) in FP32 ({plan.fp32_islands} islands)")
    return len(chosen)


def _attach_calibrator(trt, builder, config, info: OnnxInfo, plan: BuildPlan, engine_path: Path, calib_data):
    """Entropy calibrator over --calib-data; its scales cached beside the engine under a key of
    everything that decides them (calibration_cache_key)."""
    from edgeano.calibration.reader import calibration_paths
    from edgeano.runtime.trt_calibrator import MAX_IMAGES, calibration_cache_key, make_calibrator

    paths = calibration_paths(calib_data, MAX_IMAGES)
    if plan.calibration_shape:  # dynamic batch: calibration runs at one fixed shape, given by its own profile
        cprofile = builder.create_optimization_profile()
        cprofile.set_shape(info.input_name, plan.calibration_shape, plan.calibration_shape, plan.calibration_shape)
        config.set_calibration_profile(cprofile)
    key = calibration_cache_key(sha256_file(info.path), trt.__version__, paths, plan.calibration_batch)
    cache_path = engine_path.with_name(f"{artifact_base(info.path)}.{key}.calib")
    calibrator = make_calibrator(paths, preprocess_of(info.meta), plan.calibration_batch, cache_path)
    config.int8_calibrator = calibrator
    log(f"  INT8 calibration on {len(paths)} images from {calib_data} (cache {cache_path.name})")
    return calibrator  # must stay alive until the build ends


def _use_dla(trt, builder, config, plan: BuildPlan) -> None:
    n = builder.num_DLA_cores
    if n == 0:
        raise EdgeanoError("--dla: this GPU has no DLA cores (DLA is on Jetson AGX/NX Xavier and Orin); drop --dla", EXIT_USAGE)
    if not 0 <= plan.dla_core < n:
        raise EdgeanoError(f"--dla {plan.dla_core}: this device has DLA cores 0..{n - 1}", EXIT_USAGE)
    config.default_device_type = plan.device_type
    config.DLA_core = int(plan.dla_core)


def _load_timing_cache(config, timing_cache):
    """The timing cache from `timing_cache` when it is one this TensorRT and GPU accept; a corrupt
    or foreign file is ignored with a warning and a new cache is started (written after the build)."""
    data = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    if data:
        try:
            cache = config.create_timing_cache(data)
            if cache is not None and config.set_timing_cache(cache, False):  # False: refuse another GPU's / TensorRT's
                log(f"  loaded timing cache {timing_cache}")
                return cache
            why = "it is from another GPU or TensorRT version"
        except (TypeError, RuntimeError, ValueError) as e:  # a corrupt cache: TypeError from the bindings
            why = f"it is unreadable ({type(e).__name__})"
        log(f"  warning: ignoring timing cache {timing_cache}: {why}; starting a new one")
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache
