"""`edgeano serve`: a real NVIDIA Triton Inference Server hosting an artifact, through PyTriton.

PyTriton (PyPI `nvidia-pytriton`, `pip install 'edgeano[serve]'`) ships the tritonserver binary
and binds a Python callable as a model: Triton does the HTTP and gRPC endpoints, dynamic batching,
statistics and Prometheus metrics; the callable is edgeano's Engine (TensorRT where present, else
ONNX Runtime), so every backend that runs here can be served.

What travels: by default the frame as the client's `Preprocess` resized it, 8-bit (C x H x W
uint8: 150 KB at 224 px RGB, against 600 KB of float32); the server scales it by the artifact's
`input.scale` exactly as Preprocess does, so the graph sees the same floats bit for bit.
`input_dtype="float32"` sends the float tensor instead (see docs/benchmarks.md for both).

Clients read preprocessing and threshold from the model config's `parameters["edgeano"]`
(edgeano.runtime.triton). Nothing here is imported by `edgeano --help` or the runtime.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeano.artifact import METADATA_KEY
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.runtime.engine import Engine

INPUT_DTYPES = {"uint8": np.uint8, "float32": np.float32}
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # what Triton and PyTriton accept as a model name
MAX_BATCH_LIMIT = 1024


@dataclass
class ServeConfig:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    address: str = "0.0.0.0"
    max_batch: int = 8
    max_queue_delay_us: int = 500
    exit_timeout_s: int = 3  # Triton waits this long for in-flight requests at shutdown (its default: 30 s)


@dataclass
class ServedModel:
    name: str
    engine: Engine
    input_dtype: str = "uint8"


def serve_available() -> Tuple[bool, str]:
    """(True, "") where PyTriton and its tritonserver binary are installed, else (False, why)."""
    try:
        import pytriton  # noqa: F401
    except ImportError as e:
        return False, f"nvidia-pytriton is not installed ({e.name} missing): pip install 'edgeano[serve]'"
    binary = Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        return False, f"nvidia-pytriton has no tritonserver binary at {binary} (this platform's wheel lacks it)"
    return True, ""


def python_lib_fix(env=None) -> Optional[str]:
    """PyTriton's Python backend stub links libpython by name, so the loader finds the system's copy.
    When this interpreter is another build (a venv over a pyenv Python), the stub runs against a
    foreign libpython and model load fails (`'_thread.RLock' object has no attribute
    '_recursion_count'`). Put this interpreter's own lib folder first on LD_LIBRARY_PATH, which
    tritonserver and the stub inherit. Returns the folder added, or None where none is needed."""
    env = os.environ if env is None else env
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not (sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname and (Path(libdir) / soname).is_file()):
        return None
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if parts[:1] == [libdir]:
        return None
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in parts if p != libdir])
    return libdir


def validate(models: Sequence[ServedModel], cfg: ServeConfig) -> None:
    """Every check that needs no server, before one starts: one line naming the flag."""
    ports = {"--http-port": cfg.http_port, "--grpc-port": cfg.grpc_port, "--metrics-port": cfg.metrics_port}
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise EdgeanoError(f"{flag} {port}: use 1..65535", EXIT_USAGE)
    if len(set(ports.values())) < len(ports):
        raise EdgeanoError(f"--http-port, --grpc-port and --metrics-port must differ (got {', '.join(map(str, ports.values()))})", EXIT_USAGE)
    if not 1 <= cfg.max_batch <= MAX_BATCH_LIMIT:
        raise EdgeanoError(f"--max-batch {cfg.max_batch}: use 1..{MAX_BATCH_LIMIT}", EXIT_USAGE)
    if cfg.max_queue_delay_us < 0:
        raise EdgeanoError(f"--max-queue-delay-us {cfg.max_queue_delay_us}: must be >= 0", EXIT_USAGE)
    names = [m.name for m in models]
    for m in models:
        if not NAME_RE.match(m.name):
            raise EdgeanoError(f"--name {m.name!r}: use letters, digits, '_', '.' and '-' (Triton's model names)", EXIT_USAGE)
        if m.input_dtype not in INPUT_DTYPES:
            raise EdgeanoError(f"--input-dtype {m.input_dtype!r}: use {' or '.join(INPUT_DTYPES)}", EXIT_USAGE)
    if len(set(names)) < len(names):
        raise EdgeanoError(f"model names must differ: {', '.join(names)}", EXIT_USAGE)
    for flag, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((cfg.address, port))
            except OSError as e:
                raise EdgeanoError(f"{flag} {port}: cannot listen on {cfg.address}:{port} ({e.strerror}); another server there?", EXIT_USAGE)


def default_name(path) -> str:
    """`runs/gaussian/x/weights/best.onnx` -> `best`; characters Triton refuses become '_'."""
    stem = Path(path).name.split(".")[0] or "model"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def served_parameters(meta: Dict) -> Dict[str, str]:
    """What a model config's `parameters` carry for clients: the artifact's metadata, one JSON document
    (what travels is the config's own input data_type)."""
    return {METADATA_KEY: json.dumps(meta, sort_keys=True)}


def output_specs(engine: Engine) -> Dict[str, Tuple[int, ...]]:
    """Per-frame output shapes (without the batch), from one inference on a black frame: this also
    warms the runner up before the first request."""
    c, h, w = engine.preprocess.input_shape
    out = engine.infer(np.zeros((1, c, h, w), np.float32))
    return {n: tuple(np.asarray(out[n]).shape[1:]) or (1,) for n in engine.meta["outputs"]}


def to_network_input(x: np.ndarray, scale: np.float32) -> np.ndarray:
    """What travelled -> the graph's float input: uint8 pixels x scale, computed as Preprocess does
    (float32 times float32), so the result is bit-identical to the client's own tensor."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * scale
    return np.ascontiguousarray(x, np.float32)


def infer_callable(model: ServedModel, input_name: str, shapes: Dict[str, Tuple[int, ...]]):
    """The callable PyTriton binds: a batch of what travels -> the float batch -> Engine.infer."""
    from pytriton.decorators import batch

    engine, scale = model.engine, np.float32(model.engine.preprocess.scale)

    @batch
    def infer(**inputs):
        x = to_network_input(inputs[input_name], scale)
        out = engine.infer(x)
        return {n: np.asarray(out[n], np.float32).reshape((x.shape[0],) + shapes[n]) for n in shapes}

    return infer


def _attach_parameters(triton, name: str, params: Dict[str, str]) -> None:
    """PyTriton writes model configs itself and has no field for `parameters`; its per-model
    backend parameters land there, so edgeano's go in beside them."""
    for m in getattr(getattr(triton, "_model_manager", None), "models", ()):
        if getattr(m, "model_name", None) == name and hasattr(m, "_get_triton_model_config"):
            m._get_triton_model_config().backend_parameters.update(params)
            return
    raise EdgeanoError("this nvidia-pytriton version keeps its model configs elsewhere; install a supported one: "
                       "pip install 'nvidia-pytriton>=0.5,<0.8'")


def _has_gpu() -> bool:
    """GPU metrics need NVML (absent without an NVIDIA driver, and on Jetsons); asking for them
    without it prints an error line at start."""
    import ctypes.util

    return ctypes.util.find_library("nvidia-ml") is not None


def _security() -> Dict:
    """PyTriton >= 0.7 guards some endpoints with a random token. Statistics (read-only: counts, batch
    sizes, queue and compute times) stay open for monitoring; loading/unloading models, shared
    memory, tracing and log settings stay guarded."""
    try:
        from pytriton.triton import TritonSecurityConfig
    except ImportError:  # older PyTriton: nothing guarded
        return {}
    return {"security_config": TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])}


class TritonServer:
    """Start Triton with `models` bound; `stop()` (or leaving the `with`) shuts it down."""

    def __init__(self, models: Sequence[ServedModel], cfg: ServeConfig, log_file: Optional[str] = None):
        ok, why = serve_available()
        if not ok:
            raise EdgeanoError(why)
        validate(models, cfg)
        self.models, self.cfg = list(models), cfg
        self._tmp = None if log_file else tempfile.TemporaryDirectory(prefix="edgeano-serve-")
        self.log_file = Path(log_file) if log_file else Path(self._tmp.name) / "tritonserver.log"
        self.triton = None
        self.notes: List[str] = []

    @property
    def urls(self) -> Dict[str, str]:
        host = "localhost" if self.cfg.address in ("0.0.0.0", "127.0.0.1") else self.cfg.address
        return {"http": f"http://{host}:{self.cfg.http_port}", "grpc": f"grpc://{host}:{self.cfg.grpc_port}",
                "metrics": f"http://{host}:{self.cfg.metrics_port}/metrics"}

    def _bind(self, triton, m: ServedModel) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        pre, mb = m.engine.preprocess, m.engine.max_batch
        input_name = getattr(m.engine.runner, "input_name", "input")
        shapes = output_specs(m.engine)
        if mb and mb < self.cfg.max_batch:
            self.notes.append(f"{m.name}: the artifact takes batches of at most {mb}; Triton gathers up to {self.cfg.max_batch} "
                              f"requests and the engine runs them {mb} at a time (export with --dynamic-batch to run them as one)")
        triton.bind(
            model_name=m.name,
            infer_func=infer_callable(m, input_name, shapes),
            inputs=[Tensor(name=input_name, dtype=INPUT_DTYPES[m.input_dtype], shape=pre.input_shape)],
            outputs=[Tensor(name=n, dtype=np.float32, shape=s) for n, s in shapes.items()],
            config=ModelConfig(max_batch_size=self.cfg.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=self.cfg.max_queue_delay_us)),
            strict=True,
        )
        _attach_parameters(triton, m.name, served_parameters(m.engine.meta))

    def start(self) -> "TritonServer":
        from pytriton.triton import Triton, TritonConfig

        python_lib_fix()
        for name in ("pytriton", "tritonclient"):
            logging.getLogger(name).setLevel(logging.ERROR)
        c = self.cfg
        tc = TritonConfig(http_address=c.address, http_port=c.http_port, grpc_address=c.address, grpc_port=c.grpc_port,
                          metrics_address=c.address, metrics_port=c.metrics_port, allow_metrics=True, allow_cpu_metrics=True,
                          allow_gpu_metrics=_has_gpu(),
                          exit_timeout_secs=c.exit_timeout_s, log_file=self.log_file, log_verbose=0)
        self.triton = Triton(config=tc, **_security())
        try:
            for m in self.models:
                self._bind(self.triton, m)
            self.triton.run()
        except EdgeanoError:
            self.stop()
            raise
        except Exception as e:  # PyTriton raises its own timeout/model-load errors; the reason is in Triton's log
            why = f"Triton did not start: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}{self.log_tail()}"
            self.stop()
            raise EdgeanoError(why)
        return self

    def log_tail(self, n: int = 6) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return ("; tritonserver log: " + " | ".join(lines[-n:])[:800]) if lines else ""

    def is_alive(self) -> bool:
        return self.triton is not None and self.triton.is_alive()

    def stop(self) -> None:
        if self.triton is not None:
            triton, self.triton = self.triton, None
            triton.stop()
        for m in self.models:
            m.engine.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
