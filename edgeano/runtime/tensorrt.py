"""TensorRT runner: a serialized engine + its sidecar JSON -> `infer(x) -> {name: array}`.

    runner = TensorRTRunner("model.engine")    # reads model.engine.json (metadata, TRT version, device)
    out = runner.infer(x)                     # x: NCHW float32, N <= runner.max_batch

pycuda device buffers, page-locked host buffers, one stream, async copies, `execute_async_v3` on
named tensor addresses (TensorRT 8.5 and later). Buffer sizes, per-call shapes and the padding of
a short batch come from the pure I/O plan (`io_plan.plan_io`), tested without a GPU.
`tensorrt` and `pycuda` are imported lazily (inside functions), so this module imports on any
machine, and the pure checks below (`read_sidecar`, `check_sidecar`) are testable without a GPU.
Never imports torch or onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from edgeano.artifact import check_io, sidecar_path, validate
from edgeano.errors import EXIT_ERROR, EdgeanoError
from edgeano.runtime.io_plan import pad_batch, plan_io, profile_error, slice_outputs

SIDECAR_SCHEMA = 1


# -- environment ---------------------------------------------------------------------------------
def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def tensorrt_available(index: int = 0) -> Tuple[bool, str]:
    """(True, "TensorRT x.y on <GPU>") where the tensorrt and pycuda packages import and a CUDA
    GPU answers, else (False, why). EDGEANO_NO_TENSORRT=1 forces False (e.g. to compare backends)."""
    if os.environ.get("EDGEANO_NO_TENSORRT"):
        return False, "TensorRT disabled by EDGEANO_NO_TENSORRT"
    try:
        import tensorrt as trt
    except ImportError as e:  # also covers a broken install (missing libnvinfer)
        return False, f"TensorRT is not installed here ({str(e).splitlines()[0][:120]})"
    try:
        dev = device_info(index)
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
    """Runs a serialized engine. `meta` is the sidecar: the artifact metadata + a `tensorrt` section.

    Everything it allocates (TensorRT objects, device and page-locked buffers, the stream) is
    registered on one ExitStack as it is made, released with the device context pushed, by `close()`
    or by a failed `__init__`; every push is paired with its pop in the same thread (`_pushed`)."""

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
        self._held = contextlib.ExitStack()  # released with the context pushed, newest first
        self._ctx = None
        dev = device_info(device)
        stale = check_sidecar(self.meta, trt.__version__, dev, self.path) if check_device else None
        if stale:
            raise EdgeanoError(stale)
        # TensorRT uses the CUDA runtime, i.e. the device's primary context; share it and push it
        # around every call so the runner also works from the stream loop's worker thread.
        self._ctx = cuda.Device(device).retain_primary_context()
        try:
            with _pushed(cuda, self._ctx):
                self._load(trt, cuda)
        except BaseException:
            self._release()
            raise
        self.name = f"tensorrt-{self.meta.get('precision', 'fp32')}"

    def _keep(self, obj, release=None):
        """Hold `obj` until close; `release` (e.g. a free) runs then, with the context pushed."""
        if release is not None:
            self._held.callback(release)
        return obj

    def _load(self, trt, cuda) -> None:
        runtime = self._runtime = trt.Runtime(_Logger.get(trt))
        self.engine = self.context = None
        # released last (newest first), still with the context pushed: execution context, engine, runtime
        self._held.callback(self._drop, "context", "engine", "_runtime")
        dla_core = self.meta["tensorrt"].get("dla_core")
        if dla_core is not None:  # before deserialising: the engine runs on the core it was built for
            runtime.DLA_core = int(dla_core)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgeanoError(f"TensorRT could not load {self.path} (corrupt, or built by another TensorRT version); "
                               f"{rebuild_command(self.meta, self.path)}")
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {n: engine.get_tensor_mode(n) for n in names}
        tensors = [(n, "input" if modes[n] == trt.TensorIOMode.INPUT else "output", tuple(engine.get_tensor_shape(n)),
                    np.dtype(trt.nptype(engine.get_tensor_dtype(n))).name) for n in names]
        inputs = [t[0] for t in tensors if t[1] == "input"]
        profile = None
        if len(inputs) == 1 and tensors[names.index(inputs[0])][2][:1] == (-1,):
            profile = tuple(tuple(s) for s in engine.get_tensor_profile_shape(inputs[0], 0))
        self.plan = plan_io(tensors, profile, str(self.path))
        check_io(self.meta, [(self.plan.input.name, self.plan.input.shape)], self.plan.output_names, str(self.path))
        self.input_name, self.output_names = self.plan.input.name, self.plan.output_names
        self.min_batch, self.max_batch = self.plan.min_batch, self.plan.max_batch
        self.input_shape = self.plan.shape(self.input_name, self.max_batch)
        self.context = engine.create_execution_context()
        self.stream = cuda.Stream()
        self._held.callback(self._drop, "stream")
        self.host, self.device_mem = {}, {}
        self._held.callback(self._drop, "host", "device_mem")
        for t in self.plan.tensors:  # sized for the largest batch; a call uses the first rows
            host = cuda.pagelocked_empty(self.plan.buffer_elements(t.name), np.dtype(t.dtype))
            self.host[t.name] = self._keep(host, host.base.free)
            mem = cuda.mem_alloc(max(1, self.plan.buffer_bytes(t.name)))
            self.device_mem[t.name] = self._keep(mem, mem.free)
            self.context.set_tensor_address(t.name, int(mem))
        self._batch = None  # the input shape last set on the context

    def _drop(self, *attrs) -> None:
        for a in attrs:
            setattr(self, a, None)

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs for x (N x C x H x W, N <= max_batch); a batch below the engine's minimum (a fixed
        batch, a static DLA profile) is padded and the outputs sliced back to N rows."""
        x = np.asarray(x)
        n = int(x.shape[0]) if x.ndim else 0
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape[1:] or not 1 <= n <= self.max_batch:
            raise EdgeanoError(f"{self.path}: input {tuple(x.shape)} does not fit the engine "
                               f"(batch 1..{self.max_batch}, {self.input_shape[1:]})")
        size = self.plan.call_batch(n)
        with self._lock:
            if self._ctx is None:
                raise EdgeanoError(f"{self.path}: the runner is closed", EXIT_ERROR)
            return slice_outputs(self._call(pad_batch(x, size)), n)

    def _call(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        cuda, plan, b = self._cuda, self.plan, int(x.shape[0])
        with _pushed(cuda, self._ctx):
            if plan.dynamic and self._batch != b:
                shape = plan.shape(self.input_name, b)
                if not self.context.set_input_shape(self.input_name, shape):
                    raise EdgeanoError(profile_error(str(self.path), shape, plan))
                for name in self.output_names:  # the plan's per-call shapes must be the engine's
                    got = tuple(self.context.get_tensor_shape(name))
                    if got != plan.shape(name, b):
                        raise EdgeanoError(f"{self.path}: output {name!r} has shape {got} for a batch of {b}; "
                                           f"expected {plan.shape(name, b)}", EXIT_ERROR)
                self._batch = b
            host_in = self.host[self.input_name][: x.size]
            host_in[:] = x.astype(host_in.dtype, copy=False).reshape(-1)
            cuda.memcpy_htod_async(self.device_mem[self.input_name], host_in, self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise EdgeanoError(f"{self.path}: TensorRT execution failed (see the TensorRT log line above)", EXIT_ERROR)
            shapes = {name: plan.shape(name, b) for name in self.output_names}
            for name in self.output_names:
                cuda.memcpy_dtoh_async(self.host[name][: int(np.prod(shapes[name]))], self.device_mem[name], self.stream)
            self.stream.synchronize()
        # astype copies out of the page-locked buffers, which the next call reuses
        return {name: self.host[name][: int(np.prod(shapes[name]))].reshape(shapes[name]).astype(np.float32)
                for name in self.output_names}

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Free everything held, newest first, with the context pushed; then let the context go."""
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        try:
            with _pushed(self._cuda, ctx):
                self._held.close()
        finally:
            ctx.detach()

    def __del__(self):
        if sys.is_finalizing():  # interpreter shutdown: the CUDA driver may already be gone
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001 - garbage collection; nothing useful to report
            pass


@contextlib.contextmanager
def _pushed(cuda, ctx):
    """`ctx` current in this thread for the block: one push, always paired with one pop, here."""
    ctx.push()
    try:
        yield ctx
    finally:
        cuda.Context.pop()
