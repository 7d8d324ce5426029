"""Export an AnomalyModel to a single-pass ONNX with the artifact metadata, then check it
against PyTorch through the public Engine API (ONNX Runtime vs TorchRunner)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from edgeano.artifact import set_onnx_metadata
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_bytes
from edgeano.models.common import AnomalyModel, OutputTuple

DEFAULT_OPSET = 17  # TensorRT 8.6 parses up to 17; 10.x and 11 read it too
INPUT_NAME = "input"


def export_onnx(model: AnomalyModel, path, meta: Dict, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> Path:
    """Trace `model` on CPU in eval mode and write an ONNX with `meta` in its metadata_props."""
    import onnx

    if not 11 <= opset <= 21:
        raise EdgeanoError(f"--opset {opset} is out of range: use 11..21 (17 for TensorRT 8.6)")
    model = model.cpu().eval()
    c, h, w = model.preprocess.input_shape
    x = torch.rand(1, c, h, w)
    names = list(model.output_names)
    dyn = None
    if dynamic_batch:
        dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(OutputTuple(model).eval(), (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=dyn, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    meta = dict(meta, opset=opset, dynamic_batch=bool(dynamic_batch))
    set_onnx_metadata(proto, meta)
    proto.producer_name = "edgeano"
    onnx.checker.check_model(proto)
    return write_bytes(path, proto.SerializeToString())


def max_rel_diff(ref: np.ndarray, got: np.ndarray, floor: float = 1e-6) -> float:
    """max |got - ref| / max(|ref|, floor): relative difference, robust to zeros."""
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor))) if ref.size else 0.0


def max_abs_diff(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    return float(np.max(np.abs(got - ref))) if ref.size else 0.0


def compare_engines(ref, other, frames: Sequence[np.ndarray]) -> Dict[str, float]:
    """Run two Engines on the same frames (Polygraphy's comparator): score and map differences."""
    a, b = ref.score(frames), other.score(frames)
    out = {
        "n": len(frames),
        "score_max_rel": max_rel_diff(a.scores, b.scores),
        "score_max_abs": max_abs_diff(a.scores, b.scores),
    }
    if a.maps is not None and b.maps is not None:
        scale = float(np.max(np.abs(a.maps))) or 1.0
        out["map_max_abs"] = max_abs_diff(a.maps, b.maps)
        out["map_max_rel_to_peak"] = out["map_max_abs"] / scale
    return out


