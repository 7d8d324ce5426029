"""A tiny, real edgeano ONNX built without torch: what `edgeano doctor` builds into an engine to
prove the TensorRT path works, and what the runtime tests use.

score = mean over C, H, W of the input; anomaly_map = mean over C. Both are known in closed form,
so a runner's answer can be checked without a reference implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

SIZE = 16


def tiny_onnx(path, precision: str = "fp32", batch: Union[int, str] = "N", threshold: float = 0.5, size: int = SIZE) -> Path:
    """Write the tiny model to `path`. precision "fp16" types the body FP16 between Casts (like an
    FP16 export with FP32 I/O); batch "N" is dynamic, an int fixes it."""
    from onnx import TensorProto, helper

    from edgeano.artifact import make_metadata, set_onnx_metadata
    from edgeano.data.preprocess import Preprocess
    from edgeano.fileio import write_bytes

    body = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["input"], ["x"], to=body, name="cast_in"),
             helper.make_node("ReduceMean", ["x"], ["s"], axes=[1, 2, 3], keepdims=0, name="score_mean"),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0, name="map_mean"),
             helper.make_node("Cast", ["s"], ["score"], to=TensorProto.FLOAT, name="cast_score"),
             helper.make_node("Cast", ["m"], ["anomaly_map"], to=TensorProto.FLOAT, name="cast_map")]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = make_metadata("gaussian", Preprocess(size=(size, size)), ["score", "anomaly_map"],
                         {"value": threshold, "method": "tiny test model"}, precision=precision,
                         dynamic_batch=not isinstance(batch, int))
    set_onnx_metadata(model, meta)
    return write_bytes(path, model.SerializeToString())
