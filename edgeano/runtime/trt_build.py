"""Build a TensorRT engine from an edgeano ONNX; write it raw (trtexec/DeepStream load it) plus
its sidecar JSON (`model.engine.json`: the artifact metadata + TensorRT version, GPU, precision,
ONNX sha256).

How precision is obtained depends on the TensorRT version:
  8.6 / 10.x  weakly typed network + builder flags: FP16 flag; INT8 flag for a QDQ ONNX, or for a
              plain ONNX with on-device entropy calibration (`calib_data`, cached).
              A typed artifact (FP16 ONNX, QDQ ONNX) keeps its FP32 islands: on 10.x the network is
              created STRONGLY_TYPED, on 8.6 layers the ONNX types FP32 are pinned to FP32.
  >= 11       networks are always strongly typed: the precision is the ONNX's own (FP16 ONNX from
              `edgeano export --fp16`, QDQ ONNX from `edgeano calibrate`); no precision flags exist.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from edgeano.artifact import get_onnx_metadata, load_onnx, preprocess_of, sidecar_path
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.fileio import sha256_file, write_bytes, write_json
from edgeano.runtime.tensorrt import _Logger, cuda_context, device_info, import_tensorrt, trt_major

PRECISIONS = ("fp32", "fp16", "int8")


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

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] == -1


def inspect_onnx(path) -> OnnxInfo:
    """The edgeano metadata and input of an ONNX file (graph only, weights not loaded)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise EdgeanoError(f"{path}: expected an .onnx file exported by `edgeano export`")
    model = load_onnx(path, load_weights=False)
    meta = get_onnx_metadata(model, str(path))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeanoError(f"{path}: expected one image input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    if len(shape) != 4 or -1 in shape[1:]:
        raise EdgeanoError(f"{path}: input {inputs[0].name} has shape {shape}; expected NCHW with only the batch dynamic")
    precision = str(meta.get("precision", "fp32")).lower()
    if precision not in PRECISIONS:
        raise EdgeanoError(f"{path}: unknown precision {precision!r} in its metadata (expected {', '.join(PRECISIONS)})")
    if (meta.get("calibration") or {}).get("target") == "cpu":
        raise EdgeanoError(f"{path} is the CPU form of INT8 (asymmetric, for ONNX Runtime/OpenVINO on x86); TensorRT needs "
                           "the TensorRT form: edgeano calibrate FP32.onnx --data DIR (without --target cpu)", EXIT_USAGE)
    return OnnxInfo(path, meta, precision, inputs[0].name, shape)


def resolve_precision(requested: Optional[str], onnx_precision: str, trt_version: Optional[str] = None,
                      calib_data=None) -> Tuple[str, str]:
    """(engine precision, how): how is "fp32", "fp16-flag", "typed" (precision from the ONNX's own
    types) or "calibrate". trt_version None checks only what holds for every version."""
    p = (requested or onnx_precision).lower()
    if p not in PRECISIONS:
        raise EdgeanoError(f"--precision {p}: choose fp32, fp16 or int8")
    major = trt_major(trt_version) if trt_version else None
    if calib_data is not None and p != "int8":
        raise EdgeanoError("--calib-data is for --precision int8 only")
    if onnx_precision == "int8":
        if p != "int8":
            raise EdgeanoError(f"this is a QDQ (INT8) ONNX: it builds --precision int8 only; for {p} build the FP32 or FP16 ONNX")
        if calib_data is not None:
            raise EdgeanoError("this ONNX is already quantized (QDQ): drop --calib-data")
        return "int8", "typed"
    if onnx_precision == "fp16":
        if p != "fp16":
            what = "the QDQ ONNX from `edgeano calibrate`" if p == "int8" else "the FP32 ONNX"
            raise EdgeanoError(f"this is an FP16 ONNX: it builds --precision fp16 only; for {p} build {what}")
        return "fp16", "typed"
    # A plain FP32 ONNX.
    if p == "fp32":
        return "fp32", "fp32"
    if p == "fp16":
        if major is not None and major >= 11:
            raise EdgeanoError("TensorRT >= 11 networks are strongly typed: fp16 needs the FP16 ONNX "
                               "(`edgeano export --model MODEL --fp16`), then `edgeano build MODEL_fp16.onnx`")
        return "fp16", "fp16-flag"
    if major is not None and major >= 11:
        raise EdgeanoError("TensorRT >= 11 has no on-device calibration: int8 needs the QDQ ONNX "
                           "(`edgeano export --model MODEL --int8 --data DIR` or `edgeano calibrate`)")
    if calib_data is None:
        raise EdgeanoError("int8 from a plain FP32 ONNX needs --calib-data DIR (normal images, calibrated on this device) "
                           "or the QDQ ONNX from `edgeano export --int8`")
    return "int8", "calibrate"


def check_batch(info: OnnxInfo, max_batch: int) -> int:
    if max_batch < 1:
        raise EdgeanoError(f"--batch {max_batch}: must be >= 1")
    if not info.dynamic_batch and max_batch not in (1, info.input_shape[0]):
        raise EdgeanoError(f"{info.path} has a fixed batch of {info.input_shape[0]}; re-export with --dynamic-batch "
                           f"for --batch {max_batch}")
    return max_batch if info.dynamic_batch else int(info.input_shape[0])


def default_engine_path(onnx_path, precision: str) -> Path:
    """model.onnx -> model.engine, or model_int8.engine when the build changes the precision."""
    onnx_path = Path(onnx_path)
    stem = onnx_path.stem
    return onnx_path.with_name(f"{stem}.engine" if precision in stem or precision == "fp32" else f"{stem}_{precision}.engine")


def make_sidecar(info: OnnxInfo, precision: str, how: str, trt_version: str, device: Dict[str, str], engine_bytes: int,
                 **build) -> Dict:
    """The engine's sidecar: the ONNX's metadata (preprocessing, threshold, ...) with the engine's
    precision, plus what the engine is bound to (TensorRT version, GPU) and came from (ONNX sha256)."""
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


def build_engine(onnx_path, engine_path, precision: Optional[str] = "fp16", workspace_gib: float = 2, dla_core: Optional[int] = None,
                 max_batch: int = 1, timing_cache=None, calib_data=None) -> Dict:
    """Build, write engine + sidecar atomically, return the sidecar dict. precision None = the ONNX's."""
    info = inspect_onnx(onnx_path)
    import_tensorrt("building an engine")  # one-line error where it is missing
    dev = device_info()
    with cuda_context(0):  # the calibrator's pycuda buffers need the context TensorRT builds in
        return _build(info, Path(engine_path), precision, workspace_gib, dla_core, max_batch, timing_cache, calib_data, dev)


def _build(info: OnnxInfo, engine_path: Path, precision, workspace_gib, dla_core, max_batch, timing_cache, calib_data, dev) -> Dict:
    import tensorrt as trt

    major = trt_major(trt.__version__)
    precision, how = resolve_precision(precision, info.precision, trt.__version__, calib_data)
    max_batch = check_batch(info, int(max_batch))
    if workspace_gib <= 0:
        raise EdgeanoError(f"--workspace {workspace_gib}: must be > 0 GiB")
    log(f"building {precision} engine from {info.path} with TensorRT {trt.__version__} on {dev['name']} "
        f"(sm {dev['compute_capability']}), max batch {max_batch}")

    logger = _Logger.get(trt)
    builder = trt.Builder(logger)
    if major >= 11:
        flags = 0  # strongly typed is the only mode; the STRONGLY_TYPED flag is deprecated and ignored
    elif major >= 10:
        flags = (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if how == "typed" else 0
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # 8.x: implicit batch otherwise
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(info.path)):
        for i in range(parser.num_errors):
            log(f"  onnx parser: {parser.get_error(i)}")
        raise EdgeanoError(f"TensorRT {trt.__version__} cannot parse {info.path} ({parser.num_errors} error(s) above)")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if major < 11:
        _precision_flags_pre11(trt, builder, network, config, precision, how, major)
    _batch_profile(trt, builder, network, config, max_batch)
    calibrator = _attach_calibrator(trt, builder, config, info, engine_path, calib_data) if how == "calibrate" else None  # noqa: F841
    if dla_core is not None:
        _use_dla(trt, builder, config, dla_core, precision)
    # calibrator and timing stay referenced to the end: TensorRT holds only raw pointers to them.
    timing = _load_timing_cache(config, timing_cache)

    t0 = time.monotonic()
    with _Heartbeat("building"):
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeanoError(f"TensorRT could not build an engine from {info.path} (see the TensorRT errors above)")
    seconds = time.monotonic() - t0
    if timing_cache:
        write_bytes(timing_cache, bytes(timing.serialize()))  # the attached cache, updated by the build
        log(f"  saved timing cache {timing_cache}")

    data = bytes(plan)
    side = make_sidecar(info, precision, how, trt.__version__, dev, len(data), max_batch=max_batch, dla_core=dla_core,
                        workspace_gib=workspace_gib, build_seconds=round(seconds, 1))
    write_bytes(engine_path, data)  # engine first: a sidecar never describes a missing engine
    write_json(sidecar_path(engine_path), side)
    log(f"wrote {engine_path} ({len(data) / 1e6:.1f} MB) and {sidecar_path(engine_path).name} in {seconds:.0f} s")
    return side


def _precision_flags_pre11(trt, builder, network, config, precision, how, major) -> None:
    if how == "typed" and major >= 10:
        return  # strongly typed network: precision flags are not allowed
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ (explicit) or calibrated; other layers stay FP32
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log("  note: this GPU has no fast FP16; the engine will still be built but may not be faster")
        config.set_flag(trt.BuilderFlag.FP16)
        if how == "typed":  # 8.6 and an FP16 ONNX: keep the layers it types FP32 (e.g. the scoring head) in FP32
            _pin_fp32_layers(trt, network, config)


def _pin_fp32_layers(trt, network, config) -> None:
    skip = {trt.LayerType.CONSTANT, trt.LayerType.SHAPE, trt.LayerType.CAST}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip or layer.num_outputs == 0:
            continue
        if all(layer.get_output(j).dtype == trt.DataType.FLOAT for j in range(layer.num_outputs)):
            layer.precision = trt.DataType.FLOAT
            pinned += 1
    if pinned:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        log(f"  kept {pinned} layer(s) the FP16 ONNX types FP32 in FP32")


def _batch_profile(trt, builder, network, config, max_batch: int):
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if shape[0] != -1:
        return None
    rest = shape[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1,) + rest, (max_batch,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)
    return profile


def _attach_calibrator(trt, builder, config, info: OnnxInfo, engine_path: Path, calib_data):
    """Entropy calibrator over --calib-data; scales cached beside the engine, keyed by the ONNX hash."""
    from edgeano.runtime.trt_calibrator import calibration_images, make_calibrator

    paths = calibration_images(calib_data)
    batch = 8 if info.dynamic_batch else int(info.input_shape[0])
    if info.dynamic_batch:  # calibration runs at one fixed shape, given by its own profile
        shape = (batch,) + tuple(info.input_shape[1:])
        cprofile = builder.create_optimization_profile()
        cprofile.set_shape(info.input_name, shape, shape, shape)
        config.set_calibration_profile(cprofile)
    cache_path = engine_path.with_name(f"{info.path.stem}.{sha256_file(info.path)[:12]}.calib")
    calibrator = make_calibrator(paths, preprocess_of(info.meta), batch, cache_path)
    config.int8_calibrator = calibrator
    log(f"  INT8 calibration on {len(paths)} images from {calib_data} (cache {cache_path.name})")
    return calibrator  # must stay alive until the build ends


def _use_dla(trt, builder, config, dla_core: int, precision: str) -> None:
    n = builder.num_DLA_cores
    if n == 0:
        raise EdgeanoError("--dla: this GPU has no DLA cores (DLA is on Jetson AGX/NX Xavier and Orin); drop --dla")
    if not 0 <= dla_core < n:
        raise EdgeanoError(f"--dla {dla_core}: this device has DLA cores 0..{n - 1}")
    if precision == "fp32":
        raise EdgeanoError("DLA runs FP16 or INT8 only: pass --precision fp16 (or int8) with --dla")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU
    log(f"  DLA core {dla_core} with GPU fallback")


def _load_timing_cache(config, timing_cache):
    data = b""
    if timing_cache and Path(timing_cache).is_file():
        data = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):  # False: refuse a cache from another GPU / TensorRT
        log(f"  timing cache {timing_cache} is from another GPU or TensorRT version; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    elif data:
        log(f"  loaded timing cache {timing_cache}")
    return cache
