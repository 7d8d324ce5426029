"""FP16 conversion: float32 I/O, FP16 weights, the scoring head and out-of-range nodes kept FP32,
metadata, and FP16 ONNX vs PyTorch through the public Engine API."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeano.artifact import make_metadata, read_onnx_metadata, set_onnx_metadata
from edgeano.data.datasets import load_dataset
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.export.fp16 import to_fp16
from edgeano.onnx_graph import HEAD_REASON, head_nodes
from edgeano.data.images import sample_frames
from edgeano.export.onnx_export import compare_engines, export_onnx
from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.models.runner import TorchRunner
from edgeano.runtime.engine import Engine

# FP16 keeps 11 significant bits: each rounding is <= 2^-11 (4.9e-4) relative. Weights and each
# layer's activations are rounded once, so ~10 layers accumulate at most ~5e-3 in the worst (all
# same-sign) case before the FP32 head; 1e-2 is that bound with a 2x margin, and still 20x smaller
# than the gap between normal and defect scores we care about.
FP16_RTOL = 1e-2


@pytest.fixture(scope="module")
def exported(gan_runs, tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("fp16")
    for name, run in gan_runs.items():
        model, ckpt = load_checkpoint(run["best"])
        meta = checkpoint_metadata(model, ckpt)
        out[name] = (model, meta, export_onnx(model, d / f"{name}.onnx", meta, dynamic_batch=True))
    return out


@pytest.mark.parametrize("name", ["ganomaly", "skip-ganomaly"])
def test_fp16_matches_pytorch(exported, texture_data, tmp_path, name):
    model, meta, src = exported[name]
    ds = load_dataset(texture_data)
    report = to_fp16(src, tmp_path / "half.onnx", frames=sample_frames(ds.train, 8))

    half = onnx.load(str(tmp_path / "half.onnx"))
    io = list(half.graph.input) + list(half.graph.output)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in io)  # callers feed/read float32
    conv_w = {n.input[1] for n in half.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    inits = {t.name: t.data_type for t in half.graph.initializer}
    assert conv_w and all(inits[w] == TensorProto.FLOAT16 for w in conv_w if w in inits)
    assert (tmp_path / "half.onnx").stat().st_size < 0.6 * src.stat().st_size

    kept = dict(report["kept_fp32"])
    graph = onnx.load(str(src)).graph
    head = set(head_nodes(graph))
    assert head <= set(kept) and all(kept[n] == HEAD_REASON for n in head)
    assert "ReduceMean" in {n.op_type for n in graph.node if n.name in head}  # the score's reduction
    map_path = {n.name for n in graph.node if n.op_type == "Abs"}  # |x - x_hat|: feeds only anomaly_map
    assert map_path and map_path <= set(kept)  # the map is protected as the score is (one rule for FP16 and INT8)
    hmeta = read_onnx_metadata(tmp_path / "half.onnx")
    assert hmeta["precision"] == "fp16" and hmeta["fp16"]["kept_fp32"] == sorted(kept)
    assert hmeta["threshold"] == meta["threshold"]

    frames = sample_frames([t.path for t in ds.test], 12)
    d = compare_engines(Engine(TorchRunner(model), meta), Engine.load(tmp_path / "half.onnx", backend="onnxruntime"), frames)
    assert d["score_max_rel"] < FP16_RTOL and d["map_max_rel_to_peak"] < FP16_RTOL, d


def _toy_artifact(path, scale: float):
    """input -> Mul(scale) -> Conv(1x1) -> Mul(1/scale) -> ReduceMean = score: the middle is huge when scale is."""
    pre = Preprocess(size=(8, 8), color="GRAY", mean=(0.0,), std=(1.0,))
    w = numpy_helper.from_array(np.full((1, 1, 1, 1), 1.5, np.float32), "w")
    s = numpy_helper.from_array(np.array(scale, np.float32), "s")
    inv = numpy_helper.from_array(np.array(1.0 / scale, np.float32), "inv")
    nodes = [helper.make_node("Mul", ["input", "s"], ["big"], name="blow_up"),
             helper.make_node("Conv", ["big", "w"], ["conv"], name="conv"),
             helper.make_node("Mul", ["conv", "inv"], ["small"], name="shrink"),
             helper.make_node("ReduceMean", ["small"], ["score"], name="head_mean", axes=[1, 2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])], [w, s, inv])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    set_onnx_metadata(model, make_metadata("toy", pre, ["score"], {"value": 1.0, "method": "test"}))
    onnx.save(model, str(path))
    return path


def test_out_of_range_nodes_kept_fp32(tmp_path):
    frames = [np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 90, np.uint8)]
    rep = to_fp16(_toy_artifact(tmp_path / "big.onnx", 1e6), tmp_path / "big16.onnx", frames)
    kept = dict(rep["kept_fp32"])
    assert kept["head_mean"] == HEAD_REASON and "shrink" in kept  # after the last conv, feeding score
    assert "blow_up" in kept and "range" in kept["blow_up"] and "conv" in kept  # 2e5 / 3e5 > 6e4
    assert rep["check"]["finite"] and rep["check"]["score_max_rel"] < 1e-3

    rep = to_fp16(_toy_artifact(tmp_path / "ok.onnx", 10.0), tmp_path / "ok16.onnx", frames)
    assert set(dict(rep["kept_fp32"])) == {"shrink", "head_mean"}  # in range: only the head stays FP32


def test_refuses_to_convert_twice_or_in_place(exported, tmp_path):
    _, _, src = exported["ganomaly"]
    with pytest.raises(EdgeanoError, match="different file"):
        to_fp16(src, src)
    to_fp16(src, tmp_path / "h.onnx")  # no frames: head rule only, random-input check
    with pytest.raises(EdgeanoError, match="already fp16"):
        to_fp16(tmp_path / "h.onnx", tmp_path / "h2.onnx")


def test_gaussian_fp16(gaussian_onnx, texture_data, tmp_path):
    frames = sample_frames(load_dataset(texture_data).train, 4)
    rep = to_fp16(gaussian_onnx, tmp_path / "g16.onnx", frames)
    assert rep["n_kept"] >= 3 and rep["check"]["finite"]
    kept_ops = {n.op_type for n in onnx.load(str(gaussian_onnx)).graph.node if n.name in dict(rep["kept_fp32"])}
    assert kept_ops & {"MatMul", "ReduceSum", "Sub", "Mul"}, kept_ops  # the Mahalanobis head stays FP32
    d = compare_engines(Engine.load(gaussian_onnx, backend="onnxruntime"), Engine.load(tmp_path / "g16.onnx", backend="onnxruntime"),
                        sample_frames([t.path for t in load_dataset(texture_data).test], 8))
    assert d["score_max_rel"] < FP16_RTOL, d


def test_tensor_read_by_two_kept_nodes(tmp_path):
    """avg + max pooling of one feature map (the Gaussian's default): both heads read one FP16 tensor."""
    pre = Preprocess(size=(8, 8), color="GRAY", mean=(0.0,), std=(1.0,))
    w = numpy_helper.from_array(np.full((2, 1, 1, 1), 0.5, np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["feat"], name="conv"),
             helper.make_node("ReduceMean", ["feat"], ["avg"], name="avg", axes=[1, 2, 3], keepdims=0),
             helper.make_node("ReduceMax", ["feat"], ["max"], name="max", axes=[1, 2, 3], keepdims=0),
             helper.make_node("Add", ["avg", "max"], ["score"], name="sum")]
    graph = helper.make_graph(nodes, "toy2", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    set_onnx_metadata(model, make_metadata("toy", pre, ["score"], {"value": 1.0, "method": "test"}))
    onnx.save(model, str(tmp_path / "two.onnx"))
    rep = to_fp16(tmp_path / "two.onnx", tmp_path / "two16.onnx", [np.full((8, 8, 3), 120, np.uint8)])
    assert set(dict(rep["kept_fp32"])) == {"avg", "max", "sum"} and rep["check"]["score_max_rel"] < 1e-3
    onnx.checker.check_model(onnx.load(str(tmp_path / "two16.onnx")))  # SSA: one producer per tensor
