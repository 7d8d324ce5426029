"""Pure I/O plans: which rows each runner call gets, and how an engine's tensors map to buffers.

No TensorRT, no pycuda, no ONNX Runtime: plain tuples in, plain numbers out, so every rule here is
tested on any machine (tests/test_tensorrt.py) and the runners only carry them out.

Batching, for every runner (`Engine.infer`): a runner takes batches of `min_batch..max_batch` rows
(a fixed batch N is N..N; a dynamic one 1..its profile's max, or 1..any with max_batch 0). A request
of n rows is split into calls of at most max_batch; a call with fewer rows than min_batch is padded
by repeating its last row, and every output is sliced back to the real rows.

    for start, stop, size in batch_calls(n, min_batch, max_batch):
        out = runner.infer(pad_batch(x[start:stop], size))       # then out[k][: stop - start]

TensorRT buffers (`plan_io`): the engine's tensors as `TensorSpec(name, mode, shape, dtype)` and
the input's profile (min, opt, max shapes) -> an `IOPlan`: the input and outputs, the batch range,
buffer sizes at the largest batch, and the shape of every tensor for a call of `b` rows. Only the
batch (first) dimension may be dynamic, and every output carries the batch first, which is what
edgeano artifacts are (the runner checks the engine's own per-call shapes against the plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeano.errors import EXIT_USAGE, EdgeanoError

Shape = Tuple[int, ...]


# -- batching (every runner) -----------------------------------------------------------------------
def batch_calls(n: int, min_batch: int = 1, max_batch: int = 0) -> List[Tuple[int, int, int]]:
    """(start, stop, rows to send) for each call that scores n rows; max_batch 0 = any size."""
    if n < 0 or min_batch < 1 or (max_batch and max_batch < min_batch):
        raise ValueError(f"bad batch request: n={n}, batch range {min_batch}..{max_batch or 'any'}")
    step = max_batch or max(n, 1)
    return [(s, min(s + step, n), max(min(s + step, n) - s, min_batch)) for s in range(0, n, step)]


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """x with its last row repeated up to `size` rows (a real image, so normalisation stays finite)."""
    n = int(x.shape[0])
    if n >= size:
        return x
    if n == 0:
        raise ValueError("cannot pad an empty batch")
    return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


def slice_outputs(out: Dict[str, np.ndarray], n: int) -> Dict[str, np.ndarray]:
    """The first n rows of every output (undoes pad_batch)."""
    return {k: v[:n] for k, v in out.items()}


# -- TensorRT engine tensors ------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    name: str
    mode: str  # "input" or "output"
    shape: Shape  # -1 where dynamic
    dtype: str  # numpy dtype name: "float32", "float16", "int32", ...


@dataclass(frozen=True)
class IOPlan:
    input: TensorSpec
    outputs: Tuple[TensorSpec, ...]
    min_batch: int
    opt_batch: int
    max_batch: int

    @property
    def dynamic(self) -> bool:
        return self.input.shape[0] == -1

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    @property
    def tensors(self) -> Tuple[TensorSpec, ...]:
        return (self.input,) + self.outputs

    def spec(self, name: str) -> TensorSpec:
        return next(t for t in self.tensors if t.name == name)

    def shape(self, name: str, batch: int) -> Shape:
        """The tensor's shape for a call of `batch` rows."""
        return (int(batch),) + tuple(self.spec(name).shape[1:])

    def buffer_elements(self, name: str) -> int:
        """Elements of the tensor's buffer: its shape at the largest batch."""
        return int(np.prod(self.shape(name, self.max_batch)))

    def buffer_bytes(self, name: str) -> int:
        return self.buffer_elements(name) * np.dtype(self.spec(name).dtype).itemsize

    def call_batch(self, n: int) -> int:
        """Rows to send for n real rows: n, padded up to the profile's minimum (fixed batch: N)."""
        if not 1 <= n <= self.max_batch:
            raise EdgeanoError(f"batch of {n} rows: this engine takes {self.min_batch}..{self.max_batch} per call")
        return max(n, self.min_batch)


def plan_io(tensors: Sequence, profile: Optional[Tuple[Shape, Shape, Shape]] = None, source: str = "engine") -> IOPlan:
    """The I/O plan of an engine: `tensors` as TensorSpec or (name, mode, shape, dtype) tuples in
    engine order, `profile` the input's (min, opt, max) shapes of optimisation profile 0 (dynamic
    batch only). One-line EdgeanoError where the engine is not an edgeano artifact's."""
    specs = [t if isinstance(t, TensorSpec) else TensorSpec(t[0], str(t[1]).lower(), tuple(int(d) for d in t[2]), str(t[3]))
             for t in tensors]
    inputs = [t for t in specs if t.mode == "input"]
    outputs = tuple(t for t in specs if t.mode == "output")
    if len(inputs) != 1 or not outputs:
        raise EdgeanoError(f"{source}: expected one input and at least one output tensor, found "
                           f"{len(inputs)} input(s) and {len(outputs)} output(s)", EXIT_USAGE)
    inp = inputs[0]
    if len(inp.shape) != 4 or any(d < 1 for d in inp.shape[1:]):
        raise EdgeanoError(f"{source}: input {inp.name!r} has shape {inp.shape}; expected N x C x H x W with only N dynamic",
                           EXIT_USAGE)
    for t in outputs:
        if not t.shape or any(d < 1 for d in t.shape[1:]) or (t.shape[0] == -1) != (inp.shape[0] == -1) \
                or (inp.shape[0] != -1 and t.shape[0] != inp.shape[0]):
            raise EdgeanoError(f"{source}: output {t.name!r} has shape {t.shape}; expected the input's batch "
                               f"({inp.shape[0]}) first and only that dimension dynamic", EXIT_USAGE)
    if inp.shape[0] != -1:
        n = inp.shape[0]
        return IOPlan(inp, outputs, n, n, n)
    if profile is None:
        raise EdgeanoError(f"{source}: dynamic batch but no optimisation profile", EXIT_USAGE)
    lo, opt, hi = (tuple(int(d) for d in s) for s in profile)
    for s in (lo, opt, hi):
        if len(s) != 4 or s[1:] != inp.shape[1:]:
            raise EdgeanoError(f"{source}: profile shape {s} does not match the input {inp.shape}", EXIT_USAGE)
    if not 1 <= lo[0] <= opt[0] <= hi[0]:
        raise EdgeanoError(f"{source}: profile batch min {lo[0]} / opt {opt[0]} / max {hi[0]} is not ordered", EXIT_USAGE)
    return IOPlan(inp, outputs, lo[0], opt[0], hi[0])


def profile_error(source: str, shape: Shape, plan: IOPlan) -> str:
    """The line for a shape TensorRT refused: which shape, which profile."""
    return (f"{source}: TensorRT refused input shape {tuple(shape)} for {plan.input.name!r}: optimisation profile 0 is "
            f"min {plan.shape(plan.input.name, plan.min_batch)}, opt {plan.shape(plan.input.name, plan.opt_batch)}, "
            f"max {plan.shape(plan.input.name, plan.max_batch)}")
