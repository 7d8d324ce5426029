"""edgeano.compare: the one comparator (export check, FP16/INT8 reports, parity tests, verify)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeano.compare import REL_FLOOR, TOLERANCES, compare, tolerances_for


def outputs(score, amap=None):
    out = {"score": np.asarray(score, np.float32)}
    if amap is not None:
        out["anomaly_map"] = np.asarray(amap, np.float32)
    return out


def test_within_tolerance_passes_and_reports_every_metric():
    rng = np.random.default_rng(0)
    ref = outputs(rng.random(8) + 1, rng.random((8, 4, 4)))
    got = {k: v * (1 + 1e-6) for k, v in ref.items()}
    res = compare(got, ref, tolerances_for("onnxruntime", "fp32"))
    assert res.passed and res.failures == [] and res.n == 8
    assert set(res.outputs["score"].metrics) >= {"max_abs", "max_rel", "peak_rel", "pearson", "spearman"}
    assert "spearman" not in res.outputs["anomaly_map"].metrics  # rank metrics are per image (1-D)
    assert res.metric("score", "max_rel") == pytest.approx(1e-6, rel=0.1)
    lines = res.lines()
    assert len(lines) == 2 and lines[0].startswith("score") and "max_rel" in lines[0] and "<= 0.0001" in lines[0]


def test_failure_names_output_and_metric():
    ref = outputs([1.0, 2.0, 3.0], np.ones((3, 2, 2)))
    got = outputs([1.0, 2.5, 3.0], np.ones((3, 2, 2)))
    res = compare(got, ref, tolerances_for("tensorrt", "fp32"))
    assert not res.passed and res.failures == ["score.max_rel"]
    assert res.summary().startswith("score.max_rel 0.25 > 0.0002")
    assert "FAIL" in res.lines()[0] and "ok" in res.lines()[1]


def test_structural_failures():
    ref = outputs([1.0, 2.0], np.ones((2, 2, 2)))
    assert compare(outputs([1.0, 2.0]), ref).failures == ["anomaly_map.missing"]
    assert compare(outputs([1.0, 2.0, 3.0], np.ones((2, 2, 2))), ref).failures == ["score.shape"]
    res = compare(outputs([1.0, np.nan], np.ones((2, 2, 2))), ref)
    assert res.failures == ["score.finite"] and "non-finite" in res.summary()


def test_one_relative_floor():
    ref, got = outputs([0.0, 1.0]), outputs([1e-7, 1.0])
    assert compare(got, ref).metric("score", "max_rel") == pytest.approx(1e-7 / REL_FLOOR)


def test_rank_metrics_enforced_only_with_labels():
    ref = outputs([1.0, 1.01, 1.02, 5.0, 6.0])
    got = outputs([1.02, 1.01, 1.0, 5.0, 6.0])  # normals reordered, anomalies still on top
    tol = {"score": {"spearman": 0.95, "auroc_drop": 0.01}}
    unlabelled = compare(got, ref, tol)
    assert unlabelled.passed and "not enforced" in unlabelled.lines()[0]
    labelled = compare(got, ref, tol, labels=np.array([0, 0, 0, 1, 1]))
    assert labelled.failures == ["score.spearman"]
    assert labelled.metric("score", "auroc_drop") == 0.0


def test_table_covers_every_precision_and_unknown_rows_say_how_to_add_one():
    for backend in ("onnxruntime", "tensorrt"):
        for precision in ("fp32", "fp16", "int8"):
            assert "score" in TOLERANCES[(backend, precision)]
    assert tolerances_for("tensorrt-fp16", "fp16") is TOLERANCES[("tensorrt", "fp16")]
    with pytest.raises(KeyError, match="add a row"):
        tolerances_for("nosuch", "fp32")
    with pytest.raises(KeyError, match="unknown metric"):
        compare(outputs([1.0]), outputs([1.0]), {"score": {"bogus": 1}})


def test_thr_rel_judges_small_scores_on_the_thresholds_scale():
    ref = outputs([0.2, 0.25, 5.0])  # two normal images far below a threshold of 2, one anomaly
    got = outputs([0.3, 0.2, 5.5])  # +-0.1 on the normals (50% of themselves), +10% on the anomaly
    tol = {"score": {"thr_rel": 0.25}}
    res = compare(got, ref, tol, threshold=2.0)
    assert res.passed and res.metric("score", "thr_rel") == pytest.approx(0.1)  # max(0.1 / 2, 0.05 / 2, 0.5 / 5)
    assert compare(got, ref, tol).metric("score", "thr_rel") == pytest.approx(0.5)  # no threshold: max_rel
    assert compare(got, ref, tol, threshold=float("inf")).failures == ["score.thr_rel"]
    assert not compare(outputs([0.0, 0.0, 0.0]), ref, tol, threshold=2.0).passed  # zeros: the anomaly is lost
