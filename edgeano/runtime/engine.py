"""`Engine`: load an artifact, score a batch of BGR uint8 frames of any size.

    eng = Engine.load("model.onnx")           # or model.engine (TensorRT)
    res = eng.score([frame1, frame2])         # res.scores, res.labels, res.maps

A runner (one per backend, `RUNNERS`) has `meta`, `output_names`, `infer(x) -> {name: array}`,
`max_batch` (largest rows per call, 0 = any), `min_batch` (smallest, default 1: a fixed batch N
has both N) and `close()`. `Engine.infer` splits, pads and slices to that range for every runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgeano.artifact import preprocess_of
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.runtime.io_plan import batch_calls, pad_batch, slice_outputs

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass
class Result:
    scores: np.ndarray  # (N,) float32, higher = more anomalous
    labels: np.ndarray  # (N,) bool, True = NG (score >= threshold)
    threshold: float
    maps: Optional[np.ndarray] = None  # (N, H, W) at the network's input resolution, when the model has one

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _tensorrt_ready() -> bool:
    """auto backend: TensorRT (cached engine) where it and a GPU are present, else ONNX Runtime."""
    from edgeano.runtime.tensorrt import tensorrt_available

    return tensorrt_available()[0]


# Each backend: a loader (artifact path, runner options) -> runner. Loaders import their runner
# lazily: TensorRT and the other optional backends are absent on most machines.
def _load_onnxruntime(path: Path, **kw):
    if path.suffix.lower() in ENGINE_SUFFIXES:
        raise EdgeanoError(f"{path} is a TensorRT engine; ONNX Runtime needs the .onnx it was built from")
    from edgeano.runtime.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, **kw)


def _load_tensorrt(path: Path, **kw):
    if path.suffix.lower() in ENGINE_SUFFIXES:
        from edgeano.runtime.tensorrt import TensorRTRunner

        return TensorRTRunner(path, **kw)
    from edgeano.runtime.engine_cache import cached_tensorrt_runner

    return cached_tensorrt_runner(path, **kw)


def _load_triton(target: str, **kw):
    """A model on a Triton server (`http://host:8000/v2/models/NAME`): no local artifact."""
    from edgeano.runtime.triton import TritonRunner

    return TritonRunner(target, **kw)


def _load_openvino(path: Path, **kw):
    if path.suffix.lower() in ENGINE_SUFFIXES:
        raise EdgeanoError(f"{path} is a TensorRT engine; OpenVINO needs the .onnx it was built from", EXIT_USAGE)
    from edgeano.runtime.openvino import OpenVINORunner

    return OpenVINORunner(path, **kw)


RUNNERS = {"onnxruntime": _load_onnxruntime, "tensorrt": _load_tensorrt, "triton": _load_triton, "openvino": _load_openvino}
BACKENDS = ("auto",) + tuple(RUNNERS)  # the CLI's --backend choices (edgeano.cli.common.BACKENDS) mirror this
REMOTE = ("triton",)  # runners whose target is a server URL, not a file (edgeano serve hosts the others)


def auto_backend(path: Path) -> str:
    """Engines run on TensorRT; an ONNX on TensorRT where it and a GPU are present, else ONNX Runtime."""
    if path.suffix.lower() in ENGINE_SUFFIXES or _tensorrt_ready():
        return "tensorrt"
    return "onnxruntime"


class Engine:
    """Preprocessing + a runner + the threshold, all from the artifact's metadata."""

    def __init__(self, runner, meta: Dict, threshold: Optional[float] = None):
        self.runner = runner
        self.meta = meta
        self.preprocess = preprocess_of(meta)
        self.threshold = float(meta["threshold"]["value"] if threshold is None else threshold)
        if math.isnan(self.threshold):  # every frame would pass as OK; artifacts and --threshold are refused before this
            raise EdgeanoError("threshold is NaN: give a finite number")

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, backend: str = "auto", threshold: Optional[float] = None, **runner_kwargs) -> "Engine":
        """`.onnx` -> TensorRT (cached engine) where available, else ONNX Runtime; `.engine`/`.plan` ->
        TensorRT; a served model's URL (`http://host:8000/v2/models/NAME`, grpc://...) -> Triton.
        backend: one of BACKENDS."""
        from edgeano.runtime.triton import is_model_url

        if backend not in BACKENDS:
            raise EdgeanoError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
        if is_model_url(path):
            if backend not in ("auto",) + REMOTE:
                raise EdgeanoError(f"{path} is a model on a server; --backend {backend} runs a local file (the server picks its own)", EXIT_USAGE)
            runner = RUNNERS["triton"](path, **runner_kwargs)
            return cls(runner, runner.meta, threshold)
        if backend in REMOTE:
            raise EdgeanoError(f"--backend {backend} scores through a server: give --server URL and the served model's name", EXIT_USAGE)
        path = Path(path)
        if not path.is_file():
            raise EdgeanoError(f"model file not found: {path}")
        if path.suffix.lower() not in ENGINE_SUFFIXES + (".onnx",):
            raise EdgeanoError(f"{path}: unsupported model file (expected .onnx or .engine; .pt checkpoints need edgeano[train])")
        if backend == "auto":
            backend = auto_backend(path)
        runner = RUNNERS[backend](path, **runner_kwargs)
        return cls(runner, runner.meta, threshold)

    # -- properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return getattr(self.runner, "name", type(self.runner).__name__)

    @property
    def precision(self) -> str:
        """What the runner computes in (OpenVINO: as its compiled model reports it), else the artifact's."""
        return str(getattr(self.runner, "precision", None) or self.meta.get("precision", "fp32"))

    @property
    def has_map(self) -> bool:
        return "anomaly_map" in self.runner.output_names

    @property
    def max_batch(self) -> int:
        """Largest batch the runner takes in one call (0 = any)."""
        return int(getattr(self.runner, "max_batch", 0) or 0)

    @property
    def min_batch(self) -> int:
        """Smallest batch the runner takes in one call (a fixed batch N: N)."""
        return max(1, int(getattr(self.runner, "min_batch", 1) or 1))

    # -- inference -----------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Raw outputs for a preprocessed NCHW batch: split to the runner's largest batch, a short
        call padded to its smallest (a fixed batch N scores 1 or 3 frames), outputs sliced back."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        calls = batch_calls(int(x.shape[0]), self.min_batch, self.max_batch)
        if not calls:
            return self.runner.infer(x)
        parts: List[Dict[str, np.ndarray]] = [slice_outputs(self.runner.infer(pad_batch(x[a:b], size)), b - a)
                                              for a, b, size in calls]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def score(self, frames: Sequence[np.ndarray]) -> Result:
        """BGR uint8 frames (any sizes) -> Result."""
        if len(frames) == 0:
            return Result(np.zeros(0, np.float32), np.zeros(0, bool), self.threshold, None)
        return self.result(self.infer(self.preprocess.batch(frames)))

    def result(self, out: Dict[str, np.ndarray]) -> Result:
        """Raw outputs of `infer` -> Result (scores, threshold labels, maps). Callers that
        preprocess elsewhere (the camera loop's capture thread) finish with this."""
        scores = np.asarray(out["score"], dtype=np.float32).reshape(-1)
        maps = out.get("anomaly_map")
        if maps is not None:
            maps = np.asarray(maps, dtype=np.float32).reshape(scores.shape[0], *maps.shape[-2:])
        return Result(scores, scores >= self.threshold, self.threshold, maps)

    def close(self) -> None:
        close = getattr(self.runner, "close", None)
        if close:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
