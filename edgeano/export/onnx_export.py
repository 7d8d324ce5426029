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


def compare_engines(ref, other, frames: Sequence[np.ndarray], tolerances=None, labels=None) -> Dict:
    """Score the same frames with two Engines and compare them with `edgeano.compare` (the one
    comparator): score and map differences, plus "comparison" (the full result, tolerances applied)."""
    from edgeano.compare import compare

    a, b = ref.score(frames), other.score(frames)
    result = compare(_named(b), _named(a), tolerances, labels)
    score = result.outputs["score"].metrics
    out = {"n": len(frames), "score_max_rel": score.get("max_rel", float("inf")),
           "score_max_abs": score.get("max_abs", float("inf")), "comparison": result}
    if "anomaly_map" in result.outputs and b.maps is not None:
        amap = result.outputs["anomaly_map"].metrics
        out["map_max_abs"] = amap.get("max_abs", float("inf"))
        out["map_max_rel_to_peak"] = amap.get("peak_rel", float("inf"))
    return out


def _named(res) -> Dict[str, np.ndarray]:
    """An Engine Result as {output name: array}, the comparator's form."""
    return {"score": res.scores, **({} if res.maps is None else {"anomaly_map": res.maps})}


