"""Empirical bias correction of the tensors entering the float scoring head.

Rounding weights and activations to 8 bits shifts every feature map by an error that is mostly
*systematic*: nearly the same for every image (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction", sec. 4.2). Anomaly scores are distances to
the normal features (Mahalanobis, latent and pixel residuals), and normal images differ from
each other by very little, so a constant shift that would not move a classifier's argmax moves
every score. Measured on MTD with the Gaussian model: the shift of the early levels' pooled
features was 10-20x the normal spread of their distances.

The fix, generic and cheap: for each float tensor T the head reads from the INT8 part, run the
FP32 and INT8 graphs on the calibration images, take the mean of T_fp32 - T_int8 per channel
(axis 1; averaged over images and positions) and add it back in the head, as one float Add.
The random part of the error stays; it is what the report's correlations measure.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Sequence

import numpy as np

from edgeano.calibration.graph import QDQ_OPS

MAX_IMAGES = 128  # the mean error converges fast; more images only cost time


def head_input_tensors(model, head: Sequence[str]) -> List[str]:
    """Activations the head reads from outside itself (not initializers, not Q/DQ outputs)."""
    head = set(head)
    producers = {o: n for n in model.graph.node for o in n.output}
    out: List[str] = []
    for n in model.graph.node:
        if n.name not in head:
            continue
        for t in n.input:
            p = producers.get(t)
            if p is not None and p.name not in head and p.op_type not in QDQ_OPS + ("Constant",) and t not in out:
                out.append(t)
    return out


def _session_with_outputs(model, tensors: Sequence[str]):
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure_bias(fp32_model, int8_model, tensors: Sequence[str], frames, preprocess, batch: int = 1,
                 progress: bool = True) -> Dict[str, np.ndarray]:
    """Per-channel mean of (T_fp32 - T_int8) for each tensor over up to MAX_IMAGES frames, shaped
    to broadcast over T (1, C, 1, ...). (A per-channel least-squares scale as well was tried on
    MTD and did not help: what remains is image-dependent.)"""
    if not tensors:
        return {}
    a, b = _session_with_outputs(fp32_model, tensors), _session_with_outputs(int8_model, tensors)
    name = a.get_inputs()[0].name
    sums: Dict[str, np.ndarray] = {}
    ranks: Dict[str, int] = {}
    count = 0
    frames = list(frames)[:MAX_IMAGES]
    from tqdm import tqdm

    for i in tqdm(range(0, len(frames) - batch + 1, batch), desc="bias correction", unit="batch", file=sys.stderr,
                  leave=False, disable=not progress):
        x = {name: preprocess.batch(frames[i : i + batch])}
        for t, y, q in zip(tensors, a.run(list(tensors), x), b.run(list(tensors), x)):
            if y.ndim < 2:
                continue  # a per-image scalar: no channel to correct
            d = (y.astype(np.float64) - q).reshape(y.shape[0], y.shape[1], -1)
            sums[t] = sums.get(t, 0.0) + d.mean(axis=2).sum(axis=0)
            ranks[t] = y.ndim
        count += batch
    if not count:
        return {}
    return {t: (s / count).astype(np.float32).reshape([1, -1] + [1] * (ranks[t] - 2)) for t, s in sums.items()}


def apply_bias_correction(model, head: Sequence[str], bias: Dict[str, np.ndarray]) -> List[str]:
    """Insert `T + bias[T]` (float Add, per channel) and point the head's readers of T at it.
    Returns the names of the inserted nodes."""
    from onnx import helper, numpy_helper

    head = set(head)
    done: List[str] = []
    nodes = list(model.graph.node)
    for t, c in bias.items():
        cname, oname = f"{t}_int8_bias", f"{t}_int8_corrected"
        model.graph.initializer.append(numpy_helper.from_array(c, cname))
        add = helper.make_node("Add", [t, cname], [oname], name=f"{t}_int8_bias_correction")
        for n in nodes:
            if n.name in head:
                for i, inp in enumerate(n.input):
                    if inp == t:
                        n.input[i] = oname
        # right after T's producer, so the graph stays topologically sorted
        pos = next((i for i, n in enumerate(model.graph.node) if t in n.output), -1) + 1
        model.graph.node.insert(pos, add)
        done.append(add.name)
    return done
