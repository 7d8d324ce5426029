"""edgeano.train.loop, for every model it trains: the defaults it announces, contrast "auto",
per-model option checks, label-free checkpoint selection (synthetic defects on held-out good
images, the last phase only), the map normalisation in the artifact,
metrics.csv with phases, and exact resume after Ctrl-C mid-epoch (across a phase boundary for the
two-phase models). GANomaly specifics (seeds, D re-init, CLI): test_ganomaly.py."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch

from conftest import LOOP_MODELS, TINY_GAN, tiny_gan
from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_images
from edgeano.data.preprocess import split_every
from edgeano.errors import EdgeanoError
from edgeano.models.checkpoint import load_checkpoint
from edgeano.train.loop import RECIPES, train

PHASES = {"anogan": ["gan", "encoder"], "oe-sdn": ["ae", "sdn"]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: as the training fixtures (bitwise comparisons need it)


@pytest.fixture
def runs(gan_runs, model_runs):
    return {**gan_runs, **model_runs}


def test_one_table_names_every_learned_model():
    from edgeano.cli.train import MODELS as CLI_MODELS
    from edgeano.models.registry import model_names
    from edgeano.train import LOOP_MODELS as TRAINED_IN_LOOP, TRAINERS

    assert set(RECIPES) == set(TRAINED_IN_LOOP) == set(LOOP_MODELS) == set(model_names()) - {"gaussian"}
    assert set(CLI_MODELS) == set(TRAINERS)
    for name, r in RECIPES.items():  # defaults for a CPU budget, the same size for every learned model
        assert r.defaults["img_size"] == 32 and r.defaults["epochs"] > 0 and ("second_phase" in r.defaults) == bool(r.phases)


@pytest.mark.parametrize("name", LOOP_MODELS)
def test_best_is_chosen_without_labels_and_carries_the_map_normalisation(runs, texture_data, name):
    run = runs[name]
    best, ckpt = load_checkpoint(run["best"])
    rows = list(csv.DictReader(open(run["run_dir"] / "metrics.csv")))
    sel = ckpt["meta"]["selection"]
    assert run["selection"] == sel and sel["method"].startswith("highest synthetic-defect image AUROC")
    eligible = [r for r in rows if name not in PHASES or r["phase"] == PHASES[name][-1]]
    values = [float(r["synthetic_auroc"]) for r in eligible]
    picked = max(i for i, v in enumerate(values) if v == max(values))  # ties: the later epoch
    assert sel["epoch"] == int(eligible[picked]["epoch"]) and sel["value"] == pytest.approx(values[picked], abs=1e-4)
    assert ckpt["meta"]["synthetic"]["image_auroc"] == pytest.approx(sel["value"], abs=1e-4)
    assert ckpt["meta"]["synthetic"]["n_good"] == ckpt["meta"]["synthetic"]["n_defect"] == ckpt["meta"]["score_stats"]["n"]
    if sel["epoch"] == TINY_GAN["epochs"]:
        last = torch.load(str(run["last"]), weights_only=True)
        assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in last["state_dict"].items())
    m = ckpt["meta"]["map"]
    assert 0 < m["unit"] <= m["threshold"] and "held-out normal" in m["method"]
    # the held-out good images (never trained on) keep every pixel below the map threshold
    paths = load_dataset(texture_data).train
    held, _, _ = read_images([paths[i] for i in split_every(len(paths), 10)[1]])
    with torch.no_grad():
        maps = best(torch.from_numpy(best.preprocess.batch(held)))["anomaly_map"]
    assert float(maps.max()) < m["threshold"]
    assert [r["phase"] for r in rows] == PHASES.get(name, [rows[0]["phase"]] * 2)
    assert all(r["test_auroc"] and r["heldout_mean"] and r["synthetic_auroc"] and r["synthetic_pixel_auroc"] for r in rows)


@pytest.mark.parametrize("name", LOOP_MODELS)
def test_resume_is_exact_after_ctrl_c_mid_epoch(runs, texture_data, tmp_path, name):
    def ctrl_c(epoch, step):
        if (epoch, step) == (1, 2):  # second epoch: the second phase of the two-phase models
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(name, texture_data, out=tmp_path, name="cut", on_batch=ctrl_c, **tiny_gan(name))
    ts = torch.load(str(tmp_path / name / "cut" / "weights" / "last.pt"), weights_only=True)["train_state"]
    assert (ts["epoch"], ts["step"]) == (1, 2)
    res = train(name, texture_data, out=tmp_path, name="cut", resume=True, progress=False, quiet=True)
    assert res["epochs"] == TINY_GAN["epochs"]
    ref = torch.load(str(runs[name]["last"]), weights_only=True)["state_dict"]
    got = torch.load(str(res["last"]), weights_only=True)["state_dict"]
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    rows = list(csv.DictReader(open(res["run_dir"] / "metrics.csv")))
    ref_rows = list(csv.DictReader(open(runs[name]["run_dir"] / "metrics.csv")))
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == [{k: v for k, v in r.items() if k not in drop} for r in ref_rows]


def _exposure_set(texture_data, root):
    import cv2

    from edgeano.data.images import list_images

    dst = root / "exposure" / "train" / "good"
    dst.mkdir(parents=True)
    for i, p in enumerate(list_images(texture_data / "train" / "good")[:24]):
        gain = 0.3 + 0.7 * (i % 4) / 3  # exposures 0.3 .. 1.0
        cv2.imwrite(str(dst / f"{i:03d}.png"), (cv2.imread(str(p)) * gain).astype(np.uint8))
    return dst.parent.parent


def test_defaults_and_contrast_auto_are_announced(texture_data, tmp_path, caplog):
    """Unset options take the recipe's defaults and the first lines say which; contrast "auto"
    standardises when the good images' exposure varies, and keeps raw brightness when it does not."""
    varying = _exposure_set(texture_data, tmp_path)
    kw = dict(width=8, nz=8, epochs=1, batch=8, progress=False, out=tmp_path / "runs")
    with caplog.at_level(logging.INFO, logger="edgeano.train.loop"):
        res = train("ae", varying, name="auto", **kw)
    text = caplog.text
    assert "img-size 32" in text and "lr 0.001" in text and "loss l2" in text
    assert "defaults used for: img-size, lr, loss" in text
    assert "contrast standardize (auto:" in text and "--contrast none" in text
    assert load_checkpoint(res["last"])[0].preprocess.contrast == "standardize"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgeano.train.loop"):
        even = train("ae", texture_data, name="even", **kw)
        kept = train("ae", varying, name="none", contrast="none", **kw)
    assert "contrast none (auto:" in caplog.text and "contrast none (given)" in caplog.text
    assert load_checkpoint(even["last"])[0].preprocess.contrast == "none"
    assert load_checkpoint(kept["last"])[0].preprocess.contrast == "none"
    with caplog.at_level(logging.INFO, logger="edgeano.train.loop"):
        train("anogan", texture_data, name="phases", **dict(kw, epochs=3))
    assert "phases: gan epochs 1-1, encoder epochs 2-3" in caplog.text  # the recipe's 1/5 split, at least 1 each


@pytest.mark.parametrize("model,opts,match", [
    ("ganomaly", {"loss": "ssim"}, "--loss: not a setting of ganomaly"),
    ("skip-ganomaly", {"nz": 10}, "--nz: not a setting of skip-ganomaly"),
    ("rvae", {"blocks": -1}, "--blocks must be >= 0"),
    ("ae", {"loss": "l1"}, "--loss must be l2 or ssim"),
    ("ae", {"beta": 0.5}, "--beta: not a setting of ae"),
    ("vae", {"beta": -1}, "--beta must be >= 0"),
    ("vae", {"contrast": "equalize"}, "--contrast"),
    ("oe-sdn", {"img_size": 48}, "img-size"),
])
def test_options_are_checked_before_a_run_folder_exists(texture_data, tmp_path, model, opts, match):
    with pytest.raises(EdgeanoError, match=match):
        train(model, texture_data, out=tmp_path, name="bad", progress=False, quiet=True, **opts)
    assert not (tmp_path / model / "bad").exists()


def test_cli_trains_a_new_model_and_refuses_its_options_for_gaussian(texture_data, tmp_path):
    from click.testing import CliRunner

    from edgeano.cli.main import cli

    args = ["train", "--model", "vae", "--data", str(texture_data), "--epochs", "1", "--width", "8", "--nz", "8",
            "--loss", "ssim", "--batch", "16", "--out", str(tmp_path), "--name", "cli"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    model, _ = load_checkpoint(tmp_path / "vae" / "cli" / "weights" / "best.pt")
    assert model.loss == "ssim" and model.preprocess.size == (32, 32)
    assert "defaults used for: img-size, lr" in res.output and "next: edgeano export" in res.output
    bad = CliRunner().invoke(cli, ["train", "--model", "gaussian", "--data", str(texture_data), "--loss", "ssim"])
    assert bad.exit_code == 2 and "--loss" in bad.output and "Traceback" not in bad.output


def test_selector_prefers_the_best_eligible_epoch_and_resumes():
    from edgeano.train.selection import make_selector

    sel = make_selector()
    assert sel.update(1, 0.9, eligible=False) is False  # a first phase never competes
    assert sel.update(2, 0.6) and not sel.update(3, 0.5) and sel.update(4, 0.6)  # ties: the later epoch
    assert not sel.update(5, float("nan")) and sel.describe()["epoch"] == 4
    again = make_selector(sel.state)  # what a resumed run continues from
    assert not again.update(6, 0.55) and again.update(7, 0.7) and again.state == {"epoch": 7, "value": 0.7}
