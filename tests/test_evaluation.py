"""The evaluation package: pixel metrics against brute-force definitions, the synthetic-defect
protocol's determinism and masks."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from edgeano.evaluation import metrics
from edgeano.evaluation.synthetic import KINDS, synthesize, synthetic_metrics


def _small_case(seed=0, n=3, size=12):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    masks[0, 2:5, 2:6] = 1  # one region
    masks[1, 8:11, 1:3] = 1  # two regions in one image
    masks[1, 1:3, 8:11] = 1
    maps = np.round(rng.random((n, size, size)) + 0.6 * masks, 1).astype(np.float32)  # rounding makes ties
    return masks, maps


def _aupro_brute(masks, maps, max_fpr):
    regions = []  # (image index, region pixels)
    for i, m in enumerate(masks):
        n, lab = cv2.connectedComponents(m, connectivity=8)
        regions += [(i, lab == k) for k in range(1, n)]
    normal = maps[masks == 0]
    pts = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        pts.append((float((normal >= t).mean()), float(np.mean([(maps[i][r] >= t).mean() for i, r in regions]))))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # the segment crossing max_fpr: cut it there
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


@pytest.mark.parametrize("max_fpr", [0.3, 1.0, 0.05])
def test_aupro_matches_brute_force(max_fpr):
    for seed in range(3):
        masks, maps = _small_case(seed)
        assert metrics.aupro(masks, maps, max_fpr) == pytest.approx(_aupro_brute(masks, maps, max_fpr), abs=1e-12)
    masks, _ = _small_case()
    assert metrics.aupro(masks, masks.astype(np.float32)) == pytest.approx(1.0)  # the mask itself is perfect


def test_pixel_auroc_matches_pairwise_definition():
    masks, maps = _small_case(1, n=2, size=8)
    y, s = masks.ravel(), maps.ravel()
    pos, neg = s[y == 1], s[y == 0]
    pairwise = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(pairwise, abs=1e-12)
    assert np.isnan(metrics.pixel_auroc(np.zeros_like(masks), maps))


def test_rates_at_threshold():
    r = metrics.rates_at_threshold([0, 0, 0, 0, 1, 1], [0.1, 0.5, 0.6, 0.2, 0.55, 0.9], 0.55)
    assert r == {"tpr": 1.0, "fpr": 0.25}


def _goods(n=8, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(60, 200, (140, 180)).astype(np.uint8), (0, 0), 2)
    return [cv2.merge([np.roll(base, 7 * i, 1)] * 3) for i in range(n)]


def test_synthesize_is_deterministic_and_masks_cover_the_change():
    good = _goods()
    a, b, c = synthesize(good, seed=3), synthesize(good, seed=3), synthesize(good, seed=4)
    assert a.kinds == [KINDS[i % len(KINDS)] for i in range(len(good))]
    for x, y in zip(a.images + a.masks, b.images + b.masks):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.masks, c.masks))
    half = synthesize(good[:4], seed=3)  # an image's defect does not depend on the others, bar the donor
    np.testing.assert_array_equal(half.masks[1], a.masks[1])
    for img, mask, src in zip(a.images, a.masks, a.sources):
        assert mask.shape == img.shape[:2] and set(np.unique(mask)) <= {0, 1}
        assert 0.0003 < mask.mean() < 0.1
        changed = np.abs(img.astype(int) - good[src]).max(2) > 2
        near = cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0  # soft edges reach a few pixels out
        assert changed.any() and not (changed & ~near).any()


def test_synthetic_metrics_separate_good_from_defects():
    rng = np.random.default_rng(0)
    masks = [np.zeros((16, 16), np.uint8) for _ in range(4)]
    for m in masks:
        m[4:8, 4:8] = 1
    dmaps = np.stack([rng.random((16, 16)) + 2 * m for m in masks])
    res = synthetic_metrics(rng.random(4), 1 + rng.random(4), ["spot", "blob"] * 2, rng.random((4, 16, 16)), dmaps, masks,
                            threshold=1.0)
    assert res["image_auroc"] == 1.0 and res["per_kind"] == {"spot": 1.0, "blob": 1.0}
    assert res["pixel_auroc"] == pytest.approx(1.0) and res["aupro"] == pytest.approx(1.0)
    assert res["tpr_at_threshold"] == 1.0 and res["fpr_at_threshold"] == 0.0


def test_evaluate_synthetic_with_a_torch_model_and_an_engine(gaussian_run, gaussian_onnx, texture_data):
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image
    from edgeano.evaluation.synthetic import evaluate_synthetic
    from edgeano.models.checkpoint import load_checkpoint
    from edgeano.runtime.engine import Engine

    good = [read_image(t.path) for t in load_dataset(texture_data).test if t.label == 0]  # not fitted on
    model, _ = load_checkpoint(gaussian_run)
    a = evaluate_synthetic(model, good, seed=0)
    with Engine.load(gaussian_onnx) as eng:
        b = evaluate_synthetic(eng, good, seed=0)
    assert a["n_good"] == a["n_defect"] == len(good) and set(a["per_kind"]) == set(KINDS)
    assert a["image_auroc"] == pytest.approx(b["image_auroc"], abs=0.02)  # the same defects, either backend
    assert "tpr_at_threshold" in b and "tpr_at_threshold" not in a  # a bare model has no threshold


def test_evaluate_reports_pixel_metrics_and_draws_the_overlay_grid(gan_runs, texture_data, tmp_path):
    from edgeano.data.datasets import load_dataset
    from edgeano.evaluation.loop import evaluate, format_report, public, write_plots
    from edgeano.models.runner import engine_from_checkpoint

    ds = load_dataset(texture_data, need_test=True)
    with engine_from_checkpoint(gan_runs["ganomaly"]["best"]) as eng:
        res = evaluate(eng, ds, batch=8)
    masks = res["_masks"]
    assert masks.shape == res["_maps"].shape == (len(ds.test), 32, 32) and res["n_masks"] == ds.n_anomalous
    labels = np.asarray(res["_labels"])
    assert masks[labels == 0].sum() == 0 and all(m.any() for m in masks[labels == 1])
    assert res["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(masks, res["_maps"]))
    assert 0 <= res["aupro"] <= 1 and 0 <= res["tpr_at_threshold"] <= 1 and 0 <= res["fpr_at_threshold"] <= 1
    text = format_report(res)
    assert "pixel AUROC" in text and "TPR" in text
    assert {"tpr_at_threshold", "fpr_at_threshold", "pixel_auroc", "aupro"} <= set(public(res))
    paths = write_plots(res, tmp_path)
    grid = cv2.imread(str(tmp_path / "eval_maps.png"))
    assert tmp_path / "eval_maps.png" in paths and grid.shape[0] > 3 * 32 and grid.shape[1] >= 5 * 32


def test_plots_colour_the_maps_in_the_artifacts_units_by_default(gaussian_onnx, texture_data, tmp_path):
    """`edgeano demo` drew its heatmaps in this eval's own range ("no map units in the artifact")
    although the artifact had them: the units travel with the result now."""
    from edgeano.data.datasets import load_dataset
    from edgeano.evaluation.loop import evaluate, public, write_plots
    from edgeano.runtime.engine import Engine

    with Engine.load(gaussian_onnx, backend="onnxruntime") as eng:
        res = evaluate(eng, load_dataset(texture_data, need_test=True), batch=8)
        units = eng.meta["map"]
    assert res["_map_meta"] == units and "_map_meta" not in public(res)
    png = {}
    for name, meta in (("default", None), ("artifact", units), ("none", {})):
        write_plots(res, tmp_path / name, map_meta=meta)
        png[name] = (tmp_path / name / "eval_maps.png").read_bytes()
    assert png["default"] == png["artifact"] != png["none"]
