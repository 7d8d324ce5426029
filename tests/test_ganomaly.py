"""GANomaly and Skip-GANomaly: shapes, export parity (ONNX Runtime FP32 vs PyTorch through Engine),
checkpoints and thresholds, seed reproducibility, resume across epochs, discriminator
re-initialisation. Mid-epoch Ctrl-C resume of every trained model: test_train_loop.py."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import TINY_GAN, tiny_gan
from edgeano.data.datasets import load_dataset
from edgeano.errors import EdgeanoError
from edgeano.data.images import sample_frames
from edgeano.export.onnx_export import compare_engines, export_onnx
from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.models.dcgan import Discriminator
from edgeano.models.ganomaly import GANomaly, gan_preprocess
from edgeano.models.runner import TorchRunner
from edgeano.models.skip_ganomaly import SkipGANomaly
from edgeano.runtime.engine import Engine
from edgeano.train.adversarial import make_discriminator, maybe_reinit
from edgeano.train.loop import train

MODELS = ("ganomaly", "skip-ganomaly")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: as the training fixtures (bitwise comparisons need it)
FP32_RTOL = 1e-4  # ONNX Runtime vs PyTorch, both FP32: only op-order rounding differs


@pytest.mark.parametrize("cls", [GANomaly, SkipGANomaly])
@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3)])
def test_output_shapes(cls, size, channels):
    model = cls(gan_preprocess(size, channels), width=8).eval()
    out = model(torch.rand(3, channels, size, size))
    assert list(out) == list(cls.output_names) == ["score", "anomaly_map"]
    assert out["score"].shape == (3,) and out["anomaly_map"].shape == (3, size, size)
    assert torch.all(out["score"] >= 0) and torch.all(out["anomaly_map"] >= 0)


def test_preprocess_maps_to_tanh_range_and_rejects_bad_sizes():
    pre = gan_preprocess(64, 3)
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(GANomaly(gan_preprocess(32, 3), width=8).normalize(x)[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert pre.mean == (0.5,) * 3 and pre.std == (0.5,) * 3
    for bad in (48, 16, 512):
        with pytest.raises(ValueError, match="power of two"):
            gan_preprocess(bad, 3)


def test_contrast_standardize_in_graph_matches_numpy_and_ignores_exposure():
    """Per-image contrast normalisation: the graph's first layer equals Preprocess.normalize, maps an
    image's mean to mid-grey, removes a global gain/offset, and keeps a flat image finite."""
    pre = gan_preprocess(32, 1, contrast="standardize")
    model = GANomaly(pre, nz=12, width=8).eval()
    x = torch.rand(4, 1, 32, 32) * 0.5 + 0.25
    got = model.normalize(x)
    assert torch.allclose(got, torch.from_numpy(pre.normalize(x.numpy())), atol=1e-6)
    assert torch.allclose(got.mean((1, 2, 3)), torch.zeros(4), atol=0.02)  # mean -> 0.5 -> 0 after (x-0.5)/0.5
    darker = 0.4 * x + 0.05  # same part, lower exposure
    assert torch.allclose(model.normalize(darker), got, atol=1e-4)
    assert not torch.allclose(GANomaly(gan_preprocess(32, 1), nz=12, width=8).normalize(darker),
                              GANomaly(gan_preprocess(32, 1), nz=12, width=8).normalize(x), atol=0.1)
    flat = model.normalize(torch.full((1, 1, 32, 32), 0.7))
    assert torch.isfinite(flat).all() and torch.allclose(flat, torch.zeros_like(flat), atol=1e-4)
    with pytest.raises(ValueError, match="contrast"):
        gan_preprocess(32, 1, contrast="equalize")


def test_ganomaly_score_is_latent_distance():
    model = GANomaly(gan_preprocess(32, 1), nz=12, width=8).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        x_hat, z, z_hat = model.generate(model.normalize(x))
        out = model(x)
    assert z.shape == (2, 12, 1, 1)
    assert torch.allclose(out["score"], ((z - z_hat) ** 2).mean((1, 2, 3)))
    assert torch.allclose(out["anomaly_map"], (model.normalize(x) - x_hat).abs().mean(1))


@pytest.mark.parametrize("name", MODELS)
def test_onnx_fp32_matches_pytorch(gan_runs, texture_data, tmp_path, name):
    model, ckpt = load_checkpoint(gan_runs[name]["best"])
    meta = checkpoint_metadata(model, ckpt)
    onnx_path = export_onnx(model, tmp_path / f"{name}.onnx", meta, dynamic_batch=True)
    frames = sample_frames([t.path for t in load_dataset(texture_data).test], 12)
    ref = Engine(TorchRunner(model), meta)
    got = Engine.load(onnx_path, backend="onnxruntime")
    d = compare_engines(ref, got, frames)
    assert d["score_max_rel"] < FP32_RTOL and d["map_max_rel_to_peak"] < FP32_RTOL, d
    assert got.meta["model"] == name and got.meta["outputs"] == ["score", "anomaly_map"]
    assert got.meta["threshold"]["value"] == ckpt["meta"]["threshold"]["value"]

    import onnx

    names = [n.name for n in onnx.load(str(onnx_path)).graph.node]
    assert not any("classifier" in n for n in names)  # the discriminator's real/fake head is training-only
    assert any(n.startswith("/model/features/") for n in names) == (name == "skip-ganomaly")  # Skip scores with D's features


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_holds_threshold_and_resume_state(gan_runs, texture_data, name):
    run = gan_runs[name]
    ckpt = torch.load(str(run["last"]), weights_only=True)
    meta, ts = ckpt["meta"], ckpt["train_state"]
    n_train = len(load_dataset(texture_data).train)
    assert meta["score_stats"]["n"] == len(range(0, n_train, 10))  # every 10th good image held out
    assert np.isfinite(meta["threshold"]["value"]) and meta["threshold"]["method"].startswith("fpr@0.01")
    assert "f1_max" in meta["threshold"] and 0.0 <= meta["test_auroc"] <= 1.0
    assert meta["train_fingerprint"].startswith("sha256:")
    assert {"optim", "rng", "epoch", "hparams"} <= set(ts) and {"discriminator", "opt_g", "opt_d"} <= set(ts["optim"])
    assert ts["epoch"] == TINY_GAN["epochs"] and ts["rng"]["torch"].dtype == torch.uint8
    assert any(k.startswith("classifier.") for k in ts["optim"]["discriminator"])
    rows = list(csv.DictReader(open(run["run_dir"] / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(r["test_auroc"] for r in rows)


def _state(path):
    return torch.load(str(path), weights_only=True)["state_dict"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_seed_reproducible(gan_runs, texture_data, tmp_path):
    again = train("ganomaly", texture_data, out=tmp_path, name="again", **tiny_gan("ganomaly"))
    _assert_same(_state(gan_runs["ganomaly"]["last"]), _state(again["last"]))
    other = train("ganomaly", texture_data, out=tmp_path, name="other", **tiny_gan("ganomaly", seed=1, epochs=1))
    first = _state(gan_runs["ganomaly"]["last"])
    assert any(not torch.equal(first[k], v) for k, v in _state(other["last"]).items())


def test_resume_across_epochs_extends_training(gan_runs, texture_data, tmp_path):
    train("ganomaly", texture_data, out=tmp_path, name="short", **tiny_gan("ganomaly", epochs=1))
    res = train("ganomaly", texture_data, out=tmp_path, name="short", resume=True, epochs=2, progress=False, quiet=True)
    _assert_same(_state(gan_runs["ganomaly"]["last"]), _state(res["last"]))


def test_run_folder_errors(gan_runs, texture_data, tmp_path):
    with pytest.raises(EdgeanoError, match="--resume"):
        train("ganomaly", texture_data, out=tmp_path, name="nothing", resume=True)
    fixture_out = gan_runs["ganomaly"]["run_dir"].parent.parent
    with pytest.raises(EdgeanoError, match="already exists"):
        train("ganomaly", texture_data, out=fixture_out, name="fixture", **TINY_GAN)
    with pytest.raises(EdgeanoError, match="--epochs must be > 0"):
        train("ganomaly", texture_data, out=tmp_path, name="bad", **dict(TINY_GAN, epochs=0))
    with pytest.raises(EdgeanoError, match="img-size"):
        train("ganomaly", texture_data, out=tmp_path, name="bad", **dict(TINY_GAN, img_size=48))


def test_discriminator_reinitialised_only_when_its_loss_collapses():
    torch.manual_seed(0)
    disc = Discriminator(32, 1, width=8)
    with torch.no_grad():
        for p in disc.parameters():
            p.fill_(0.3)  # far from N(0, 0.02)
    before = [p.clone() for p in disc.parameters()]
    assert not maybe_reinit(disc, 1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, disc.parameters()))
    assert maybe_reinit(disc, 1e-6)
    conv = disc.features[0].weight
    assert not torch.equal(conv, before[0]) and conv.std().item() < 0.05


def test_skip_ganomaly_discriminator_shares_the_scoring_features():
    model = SkipGANomaly(gan_preprocess(32, 1), width=8)
    disc = make_discriminator(model)
    assert disc.features is model.features
    with torch.no_grad():
        model.features[0].weight.fill_(0.3)
    maybe_reinit(disc, 0.0)
    assert model.features[0].weight.std().item() > 0  # re-init reached the model's scoring layers too


def test_cli_train_prints_where_and_next_step(texture_data, tmp_path):
    from click.testing import CliRunner

    from edgeano.cli.main import cli

    args = ["train", "--model", "ganomaly", "--data", str(texture_data), "--img-size", "32", "--epochs", "1",
            "--batch", "16", "--out", str(tmp_path), "--name", "cli"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ganomaly" / "cli" / "weights" / "best.pt").is_file()
    assert "next: edgeano export" in res.output
    bad = CliRunner().invoke(cli, args[:-1] + ["cli2", "--img-size", "100"])
    assert bad.exit_code != 0 and "power of two" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "ganomaly" / "cli2").exists()
