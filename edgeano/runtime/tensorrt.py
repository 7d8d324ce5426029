"""TensorRT runner: a serialized engine + its sidecar JSON -> `infer(x) -> {name: array}`.

    runner = TensorRTRunner("model.engine")    # reads model.engine.json (metadata, TRT version, device)
    out = runner.infer(x)                     # x: NCHW float32, N <= runner.max_batch

pycuda device buffers, page-locked host buffers, one stream, async copies. TensorRT >= 10 runs
`execute_async_v3` on named tensor addresses; 8.x runs `execute_async_v2` on a bindings list.
`tensorrt` and `pycuda` are imported lazily (inside functions), so this module imports on any
machine, and the pure checks below (`read_sidecar`, `check_sidecar`) are testable without a GPU.
Never imports torch or onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from edgeano.artifact import sidecar_path, validate
from edgeano.errors import EdgeanoError

SIDECAR_SCHEMA = 1


# -- environment ---------------------------------------------------------------------------------
def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def tensorrt_available() -> Tuple[bool, str]:
    """(True, "TensorRT x.y on <GPU>") where the tensorrt and pycuda packages import and a CUDA
    GPU answers, else (False, why). EDGEANO_NO_TENSORRT=1 forces False (e.g. to compare backends)."""
    if os.environ.get("EDGEANO_NO_TENSORRT"):
        return False, "TensorRT disabled by EDGEANO_NO_TENSORRT"
    try:
        import tensorrt as trt
    except ImportError as e:  # also covers a broken install (missing libnvinfer)
        return False, f"TensorRT is not installed here ({str(e).splitlines()[0][:120]})"
    try:
        dev = device_info()
    except EdgeanoError as e:
        return False, str(e)
    return True, f"TensorRT {trt.__version__} on {dev['name']} (sm {dev['compute_capability']})"


def device_info(index: int = 0) -> Dict[str, str]:
    """Name and compute capability of CUDA device `index`, through pycuda (no context made)."""
    try:
        import pycuda.driver as cuda
    except ImportError as e:
        raise EdgeanoError(f"pycuda is not installed ({e.name} missing): pip install 'edgeano[tensorrt]'")
    try:
        cuda.init()
        if cuda.Device.count() <= index:
            raise EdgeanoError(f"no CUDA GPU {index} here ({cuda.Device.count()} found)")
        dev = cuda.Device(index)
        major, minor = dev.compute_capability()
        return {"name": dev.name(), "compute_capability": f"{major}.{minor}"}
    except cuda.Error as e:
        raise EdgeanoError(f"no usable CUDA GPU: {str(e).splitlines()[0][:160]}")


def import_tensorrt(for_what: str = "this"):
    """`import tensorrt` or one line saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EdgeanoError(f"{for_what} needs TensorRT, which is not installed here ({str(e).splitlines()[0][:120]}); "
                           f"on a Jetson it comes with JetPack, on a desktop: pip install tensorrt")
    return trt


@contextlib.contextmanager
def cuda_context(index: int = 0):
    """Make device `index`'s primary context (the one TensorRT's CUDA runtime uses) current for
    pycuda calls in this thread, e.g. the calibrator's buffers during a build."""
    import pycuda.driver as cuda

    cuda.init()
    ctx = cuda.Device(index).retain_primary_context()
    ctx.push()
    try:
        yield ctx
    finally:
        cuda.Context.pop()
        ctx.detach()


# -- sidecar: what the engine was built from and for ---------------------------------------------
def rebuild_command(side: Dict, engine_path) -> str:
    trt_info = side.get("tensorrt") if isinstance(side.get("tensorrt"), dict) else {}
    onnx = trt_info.get("onnx") or "MODEL.onnx"
    prec = side.get("precision") or "fp16"
    return f"edgeano build {onnx} --precision {prec} --out {engine_path}"


def read_sidecar(engine_path) -> Dict:
    """The engine's sidecar JSON, validated; one-line EdgeanoError when missing, corrupt or foreign."""
    engine_path = Path(engine_path)
    side_path = sidecar_path(engine_path)
    rebuild = f"rebuild it with `edgeano build MODEL.onnx --out {engine_path}`"
    if not side_path.is_file():
        raise EdgeanoError(f"{engine_path}: sidecar {side_path.name} is missing (it holds preprocessing, threshold and "
                           f"TensorRT version); {rebuild}")
    try:
        side = json.loads(side_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgeanoError(f"{side_path}: not valid JSON ({type(e).__name__}); {rebuild}")
    if not isinstance(side, dict) or not isinstance(side.get("tensorrt"), dict):
        raise EdgeanoError(f"{side_path}: not an edgeano engine sidecar (no 'tensorrt' section); {rebuild}")
    validate(side, str(side_path))
    for key in ("version", "device", "compute_capability", "onnx_sha256"):
        if key not in side["tensorrt"]:
            raise EdgeanoError(f"{side_path}: sidecar lacks tensorrt.{key}; {rebuild}")
    size = side["tensorrt"].get("engine_bytes")
    if size is not None and engine_path.is_file() and engine_path.stat().st_size != size:
        raise EdgeanoError(f"{side_path} belongs to another engine ({size} bytes, {engine_path.name} has "
                           f"{engine_path.stat().st_size}); {rebuild_command(side, engine_path)}")
    return side


def check_sidecar(side: Dict, trt_version: str, device: Dict[str, str], engine_path="model.engine") -> Optional[str]:
    """None when the engine fits this TensorRT version and GPU, else the one-line reason with the
    rebuild command. Engines are tied to the exact TensorRT version and to the GPU they were built on."""
    info = side["tensorrt"]
    built = f"TensorRT {info['version']} on {info['device']} (sm {info['compute_capability']})"
    here = f"TensorRT {trt_version} on {device['name']} (sm {device['compute_capability']})"
    if str(info["version"]) != str(trt_version) or str(info["compute_capability"]) != str(device["compute_capability"]) \
            or str(info["device"]) != str(device["name"]):
        return f"{engine_path} was built with {built}; this is {here}: rebuild it here with `{rebuild_command(side, engine_path)}`"
    return None


# -- the runner ------------------------------------------------------------------------------------
class _Logger:
    """One TensorRT logger per process (TensorRT warns when several are created)."""

    instance = None

    @classmethod
    def get(cls, trt):
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


class TensorRTRunner:
    """Runs a serialized engine. `meta` is the sidecar: the artifact metadata + a `tensorrt` section."""

    def __init__(self, engine_path, device: int = 0, check_device: bool = True, threads=None, providers=None):
        # threads/providers are ONNX Runtime options; accepted so callers can pass one set of options.
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise EdgeanoError(f"engine file not found: {self.path}")
        self.meta = read_sidecar(self.path)  # before TensorRT: a bad sidecar is a one-line error anywhere
        trt = import_tensorrt(f"{self.path}")
        import pycuda.driver as cuda

        self._trt, self._cuda = trt, cuda
        self._lock = threading.Lock()  # one context + one set of buffers: one call at a time
        dev = device_info(device)
        stale = check_sidecar(self.meta, trt.__version__, dev, self.path) if check_device else None
        if stale:
            raise EdgeanoError(stale)
        self._v3 = trt_major(trt.__version__) >= 10
        # TensorRT uses the CUDA runtime, i.e. the device's primary context; share it and push it
        # around every call so the runner also works from the stream loop's worker thread.
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        try:
            self._load(trt, cuda)
        except BaseException:
            cuda.Context.pop()
            self._ctx.detach()
            self._ctx = None
            raise
        cuda.Context.pop()
        self.name = f"tensorrt-{self.meta.get('precision', 'fp32')}"

    def _load(self, trt, cuda) -> None:
        runtime = trt.Runtime(_Logger.get(trt))
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgeanoError(f"TensorRT could not load {self.path} (corrupt, or built by another TensorRT version); "
                               f"{rebuild_command(self.meta, self.path)}")
        self._runtime, self.engine = runtime, engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EdgeanoError(f"{self.path}: expected one input tensor, found {len(inputs)}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        shape = tuple(engine.get_tensor_shape(self.input_name))
        self.dynamic = shape[0] == -1
        # Dynamic batch: the largest batch of optimisation profile 0 (min, opt, max).
        self.max_batch = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0]) if self.dynamic else int(shape[0])
        self.input_shape = (self.max_batch,) + shape[1:]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        # Buffers sized for max_batch; per call only the first N rows are copied.
        self.stream = cuda.Stream()
        self.host, self.device_mem = {}, {}
        for n in names:
            full = self.input_shape if n == self.input_name else self._max_output_shape(n)
            self.host[n] = cuda.pagelocked_empty(int(np.prod(full)), self.dtypes[n])
            self.device_mem[n] = cuda.mem_alloc(max(1, self.host[n].nbytes))
        if self._v3:
            for n in names:
                self.context.set_tensor_address(n, int(self.device_mem[n]))
        else:  # 8.x: bindings in binding-index order
            self.bindings = [0] * len(names)
            for n in names:
                self.bindings[engine.get_binding_index(n)] = int(self.device_mem[n])

    def _max_output_shape(self, name):
        if self.dynamic:
            self.context.set_input_shape(self.input_name, self.input_shape)
            return tuple(self.context.get_tensor_shape(name))
        return tuple(self.engine.get_tensor_shape(name))

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        x = np.asarray(x)
        n = int(x.shape[0])
        if n < 1 or n > self.max_batch or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise EdgeanoError(f"{self.path}: input {tuple(x.shape)} does not fit the engine "
                               f"(batch 1..{self.max_batch}, {self.input_shape[1:]})")
        cuda = self._cuda
        with self._lock:
            return self._infer_locked(cuda, x, n)

    def _infer_locked(self, cuda, x: np.ndarray, n: int) -> Dict[str, np.ndarray]:
        self._ctx.push()
        try:
            if self.dynamic:
                self.context.set_input_shape(self.input_name, (n,) + self.input_shape[1:])
            host_in = self.host[self.input_name]
            host_in[: x.size] = x.astype(self.dtypes[self.input_name], copy=False).reshape(-1)
            cuda.memcpy_htod_async(self.device_mem[self.input_name], host_in[: x.size], self.stream)
            if self._v3:
                ok = self.context.execute_async_v3(self.stream.handle)
            else:
                ok = self.context.execute_async_v2(self.bindings, self.stream.handle)
            if not ok:
                raise EdgeanoError(f"{self.path}: TensorRT execution failed (see the TensorRT log line above)")
            shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.output_names}
            for name in self.output_names:
                size = int(np.prod(shapes[name]))
                cuda.memcpy_dtoh_async(self.host[name][:size], self.device_mem[name], self.stream)
            self.stream.synchronize()
        finally:
            cuda.Context.pop()
        # Copies out of the page-locked buffers: the next call reuses them.
        return {name: self.host[name][: int(np.prod(shapes[name]))].reshape(shapes[name]).astype(np.float32)
                for name in self.output_names}

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        self._ctx.push()
        try:
            for mem in getattr(self, "device_mem", {}).values():
                mem.free()
            self.device_mem, self.host = {}, {}
            self.context = self.engine = self._runtime = None
        finally:
            self._cuda.Context.pop()
            self._ctx.detach()
            self._ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing useful to report
            pass
