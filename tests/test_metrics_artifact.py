"""Metrics against brute-force definitions; artifact metadata round trip and validation."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeano import artifact
from edgeano.evaluation import metrics
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError


def _pairwise_auroc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    assert metrics.auroc(y, s) == pytest.approx(_pairwise_auroc(y, s), abs=1e-12)
    assert metrics.auroc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert np.isnan(metrics.auroc([1, 1], [0.1, 0.2]))


def test_f1_max_and_fpr_threshold():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 1.0])
    r = metrics.f1_max(y, s)
    assert r["threshold"] == 0.8 and r["f1"] == pytest.approx(0.8)  # 2 TP, 1 FP
    normal = np.arange(100, dtype=float)
    t = metrics.threshold_at_fpr(normal, 0.05)
    assert (normal >= t).mean() <= 0.05 and t > 94


def test_rank_correlation():
    a = np.arange(10.0)
    assert metrics.rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert metrics.rank_correlation(a, -a) == pytest.approx(-1.0)


def _tiny_onnx():
    node = helper.make_node("ReduceMean", ["input"], ["score"], axes=[1, 2, 3], keepdims=0)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)  # IR 8: what ORT and TRT read


def test_metadata_round_trip_and_errors(tmp_path):
    meta = artifact.make_metadata("gaussian", Preprocess(size=(8, 8)), ["score"], {"value": 3.5, "method": "fpr@0.01"},
                                  artifact.score_stats([1, 2, 3]), backbone="efficientnet-lite0")
    m = _tiny_onnx()
    artifact.set_onnx_metadata(m, meta)
    artifact.set_onnx_metadata(m, meta)  # replaces, never duplicates
    assert sum(p.key == "edgeano" for p in m.metadata_props) == 1
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    back = artifact.read_onnx_metadata(path)
    assert back["threshold"]["value"] == 3.5 and back["input"]["size"] == [8, 8] and back["schema"] == artifact.SCHEMA
    assert artifact.preprocess_of(back) == Preprocess(size=(8, 8))

    plain = tmp_path / "plain.onnx"
    onnx.save(_tiny_onnx(), str(plain))
    with pytest.raises(EdgeanoError, match="not an edgeano artifact"):
        artifact.read_onnx_metadata(plain)
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(path.read_bytes()[:40])
    with pytest.raises(EdgeanoError, match="not a readable ONNX"):
        artifact.read_onnx_metadata(trunc)
    with pytest.raises(EdgeanoError, match="newer"):
        artifact.validate(dict(meta, schema=artifact.SCHEMA + 1))


def test_engine_scores_frames_with_metadata_preprocessing(tmp_path, texture_data):
    """The runtime's tensor is the Preprocess tensor: ReduceMean of the input equals numpy's mean."""
    import cv2

    from edgeano.runtime import Engine

    pre = Preprocess(size=(8, 8))
    m = _tiny_onnx()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    artifact.set_onnx_metadata(m, artifact.make_metadata("probe", pre, ["score"], {"value": 0.5, "method": "fixed"}))
    onnx.save(m, str(tmp_path / "probe.onnx"))
    frames = [cv2.imread(str(p)) for p in sorted((texture_data / "test" / "good").iterdir())[:3]]
    with Engine.load(tmp_path / "probe.onnx") as eng:
        res = eng.score(frames)
    expect = pre.batch(frames).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(res.scores, expect, rtol=1e-5)
    np.testing.assert_array_equal(res.labels, expect >= 0.5)
    assert res.maps is None and len(res) == 3


@pytest.mark.parametrize("change, field", [
    (lambda m, g: m["input"].update(size=[2000, 2000]), "input.size"),  # within the bound, not the graph's 8x8
    (lambda m, g: m["input"].update(size=[8, 16]), r"input.size\[1\]"),
    (lambda m, g: m["input"].update(color="GRAY", mean=[0.5], std=[0.5], channels=1), "input.channels"),
    (lambda m, g: m.update(outputs=["score", "anomaly_map"]), "anomaly_map"),
    (lambda m, g: g.graph.output[0].__setattr__("name", "out") or g.graph.node[0].output.__setitem__(0, "out"), "score"),
    (lambda m, g: g.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1])), "2 inputs"),
])
def test_runner_refuses_metadata_that_does_not_match_the_graph(tmp_path, change, field):
    from edgeano.runtime import Engine

    g = _tiny_onnx()
    meta = artifact.make_metadata("probe", Preprocess(size=(8, 8)), ["score"], {"value": 0.5, "method": "fixed"})
    change(meta, g)
    artifact.set_onnx_metadata(g, meta)
    path = tmp_path / "tampered.onnx"
    onnx.save(g, str(path))
    with pytest.raises(EdgeanoError, match=field) as e:
        Engine.load(path, backend="onnxruntime")
    assert str(path) in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == 2


@pytest.mark.parametrize("change, field", [
    (lambda m: m["input"].update(size=[20000, 20000]), r"input\.size"),  # would allocate 4.5 GB per frame
    (lambda m: m["input"].update(size=["64", "64"]), r"input\.size"),
    (lambda m: m["input"].update(scale=0), r"input\.scale"),
    (lambda m: m["input"].update(std=[float("nan")] * 3), r"input\.std"),
    (lambda m: m.update(schema="1"), r"schema"),
    (lambda m: m.update(threshold=5), r"threshold"),
    (lambda m: m["threshold"].update(value=float("inf")), r"threshold\.value"),
    (lambda m: m["threshold"].update(value=True), r"threshold\.value"),
    (lambda m: m.update(score_stats={"mean": "x"}), r"score_stats\.mean"),
    (lambda m: m.update(outputs="score"), r"outputs"),
    (lambda m: m.update(precision="int4"), r"precision"),
])
def test_validate_names_the_field_of_a_bad_metadata_document(change, field):
    meta = artifact.make_metadata("probe", Preprocess(size=(8, 8)), ["score"], {"value": 0.5, "method": "fixed"})
    change(meta)
    with pytest.raises(EdgeanoError, match=field) as e:
        artifact.validate(meta, "m.onnx")
    assert str(e.value).startswith("m.onnx: ") and e.value.exit_code == 2


def test_validate_refuses_a_document_that_is_not_an_object():
    for doc in (None, [], "x"):
        with pytest.raises(EdgeanoError, match="m.onnx"):
            artifact.validate(doc, "m.onnx")
