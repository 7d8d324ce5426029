"""The Gaussian model's anomaly map: the constant-matrix upsampling, the coreset, the map's shape
and fixed units (meta["map"]), the fused score, the plain Rippel model without a map, and the
synthetic-defect estimate's determinism. ORT/FP16/INT8 vs PyTorch for the map: tests/test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgeano.artifact import validate
from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.errors import EdgeanoError
from edgeano.evaluation.metrics import pixel_auroc
from edgeano.evaluation.plots import heat_tile, map_colours
from edgeano.evaluation.synthetic import resize_mask
from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.models.patch_map import bilinear_matrix, blur_matrix, greedy_coreset


def test_upsampling_matrices():
    x = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    ref = F.interpolate(x, size=(14, 11), mode="bilinear", align_corners=False)
    got = torch.from_numpy(bilinear_matrix(14, 7)) @ x @ torch.from_numpy(bilinear_matrix(11, 5)).T
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    b = blur_matrix(50, 4.0)
    np.testing.assert_allclose(b.sum(1), 1.0, rtol=1e-12)  # a constant map stays constant
    assert (b >= 0).all() and np.allclose(b[20:30, 20:30], b[20:30, 20:30].T)  # a symmetric kernel away from borders


def test_coreset_covers_every_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=g) * 20
    x = torch.cat([c + torch.randn(200, 16, generator=g) for c in centres])
    picked = greedy_coreset(x, 6, seed=1, proj=0)
    assert len(set((picked // 200).tolist())) == 6  # k-centre: one pick per cluster, never two in one
    assert torch.equal(picked, greedy_coreset(x, 6, seed=1, proj=0))


@pytest.fixture(scope="module")
def fitted(gaussian_run, texture_data):
    model, ck = load_checkpoint(gaussian_run)
    items = load_dataset(texture_data).test
    frames = [read_image(t.path) for t in items]
    with torch.no_grad():
        out = model(torch.from_numpy(model.preprocess.batch(frames)))
    return model, ck, items, {k: v.numpy() for k, v in out.items()}


def test_map_shape_units_and_good_frames_stay_below_the_map_threshold(fitted):
    model, ck, items, out = fitted
    meta = checkpoint_metadata(model, ck)
    assert model.output_names == ("score", "anomaly_map") and meta["outputs"] == ["score", "anomaly_map"]
    amap = out["anomaly_map"]
    assert amap.shape == (len(items), *model.preprocess.size)
    units = validate(meta)["map"]
    assert 0 < units["unit"] and 0 < units["threshold"] and "out-of-fold" in units["method"]
    labels = np.array([t.label for t in items])
    peaks = amap.reshape(len(amap), -1).max(1)
    # the map threshold is what at most 1 % of out-of-fold good images reach: unseen good images stay under it
    assert (peaks[labels == 0] < units["threshold"]).mean() >= 0.8
    assert np.median(amap[labels == 0]) < units["unit"] and abs(np.median(amap[labels == 0])) < 1.0  # cold, in fixed units
    masks = np.stack([np.zeros(amap.shape[1:], np.uint8) if t.mask is None else
                      resize_mask(read_image(t.mask)[:, :, 0] > 127, model.preprocess.size) for t in items])
    assert pixel_auroc(masks, amap) > 0.65  # measured 0.74 on this 64 px set (a 4 x 4 patch grid)


def test_fused_score_is_the_documented_formula(fitted):
    model, _, _, out = fitted
    sd_g, sd_m, floor = model.fusion.tolist()
    expect = out["global_score"] / sd_g + model.map_weight * (out["anomaly_map"].reshape(len(out["score"]), -1).max(1) - floor) / sd_m
    np.testing.assert_allclose(out["score"], expect, rtol=1e-5)
    assert (out["score"] >= 0).all() and out["anomaly_map"].min() >= floor - 1e-5


def test_plain_rippel_model_and_a_deterministic_estimate(texture_data):
    from edgeano.train.gaussian import fit_gaussian

    frames = [read_image(p) for p in load_dataset(texture_data).train[:20]]
    plain, meta = fit_gaussian(frames, img_size=64, map_levels=(), synthetic=8)
    assert plain.output_names == ("score",) and "map" not in meta and meta["synthetic"]["n_defect"] == 8
    a = fit_gaussian(frames, img_size=64, synthetic=8)
    b = fit_gaussian(frames, img_size=64, synthetic=8)
    assert a[1]["synthetic"] == b[1]["synthetic"] and a[1]["threshold"] == b[1]["threshold"] and a[1]["map"] == b[1]["map"]
    assert torch.equal(a[0].patch_map.memory, b[0].patch_map.memory)
    c = fit_gaussian(frames, img_size=64, synthetic=8, seed=1)  # the seed reaches the defects, folds' coresets and memory
    assert c[1]["synthetic"] != a[1]["synthetic"] and not torch.equal(c[0].patch_map.memory, a[0].patch_map.memory)
    assert {"image_auroc", "pixel_auroc", "aupro", "tpr_at_threshold"} <= set(a[1]["synthetic"])


def test_map_metadata_is_validated():
    from edgeano.artifact import make_metadata
    from edgeano.data.preprocess import Preprocess
    from edgeano.stream.maps import MapScale

    meta = make_metadata("gaussian", Preprocess(size=(8, 8)), ["score", "anomaly_map"], {"value": 1.0})
    good = {"unit": 1.5, "threshold": 2.0, "method": "p99.9", "p50": 0.1, "n_images": 4}
    validate(dict(meta, map=good))
    assert MapScale.from_meta(dict(meta, map=good)) == MapScale(1.5, 2.0, "p99.9")  # the camera loop reads the same section
    for bad in ({"unit": 0, "threshold": 2.0, "method": "m"}, {"unit": 1.0, "threshold": float("nan"), "method": "m"},
                {"unit": 1.0, "threshold": -1.0, "method": "m"}, {"unit": 1.0, "threshold": 2.0},
                {"unit": 1.0, "threshold": 2.0, "method": "m", "p50": [1]}, "1.5"):
        for check in (lambda m: validate(m), lambda m: MapScale.from_meta(m)):
            with pytest.raises(EdgeanoError, match="map"):
                check(dict(meta, map=bad))


def test_eval_overlay_colours_are_the_camera_overlays_in_the_artifact_units():
    from edgeano.stream.maps import MapScale
    from edgeano.stream.overlay import colorize

    units = {"unit": 1.0, "threshold": 3.0, "method": "m"}
    levels, caption = map_colours(units, np.full((2, 16, 16), 50.0))  # good maps ignored: the artifact's units win
    assert "artifact" in caption
    img = np.full((16, 16, 3), 128, np.uint8)
    ramp = np.linspace(0, 4, 256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_array_equal(heat_tile(img, ramp, levels, alpha=1.0), colorize(ramp, MapScale.from_meta({"map": units})))
    cold = heat_tile(img, np.zeros((16, 16), np.float32), levels, alpha=1.0)
    hot = heat_tile(img, np.full((16, 16), 3.0, np.float32), levels, alpha=1.0)
    assert cold[8, 8, 0] > cold[8, 8, 2] and hot[8, 8, 2] > hot[8, 8, 0]  # BGR: blue at 0, red at the map threshold


def test_train_map_option(texture_data, tmp_path):
    from click.testing import CliRunner

    from edgeano.cli.main import cli

    base = ["train", "--data", str(texture_data), "--img-size", "64", "--out", str(tmp_path / "runs")]
    for args, msg in ((["--model", "gaussian", "--map", "0,9"], "levels must be distinct"),
                      (["--model", "gaussian", "--map", "four"], "give backbone levels"),
                      (["--model", "ganomaly", "--map", "4,5"], "Gaussian-model option")):
        r = CliRunner().invoke(cli, base + args)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "runs").exists()  # rejected before any work
    r = CliRunner().invoke(cli, base + ["--model", "gaussian", "--map", "none", "--name", "plain"])
    assert r.exit_code == 0, r.output
    model, ck = load_checkpoint(tmp_path / "runs" / "gaussian" / "plain" / "weights" / "best.pt")
    assert model.patch_map is None and model.output_names == ("score",) and "map" not in ck["meta"]
