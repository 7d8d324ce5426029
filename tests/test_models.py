"""AnoGAN, EGBAD, AE, VAE, Residual VAE and OE-SDN: shapes, each paper's score and map, the parts
that stay out of the exported graph, AnoGAN's latent search, and the training steps' phases.
Trainer behaviour common to all models: test_train_loop.py; ONNX parity: test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeano.models.ae import SSIM, ConvAE, ssim_window
from edgeano.models.anogan import AnoGAN, LatentSearch, latent_search, search_loss
from edgeano.models.egbad import EGBAD
from edgeano.models.ganomaly import gan_preprocess
from edgeano.models.oe_sdn import OESDN
from edgeano.models.registry import create
from edgeano.models.rvae import PreActBlock, ResidualVAE
from edgeano.models.vae import VAE, kl_divergence
from edgeano.train.gan_steps import AnoGANStep
from edgeano.train.reconstruction import OESDNStep, ReconstructionStep, rotate_outliers

NEW = {"anogan": {}, "egbad": {}, "ae": {}, "vae": {}, "rvae": {"blocks": 1}, "oe-sdn": {}}
UNTRAINED = {"meta": {"threshold": {"value": 1.0, "method": "untrained test model"}}}  # checkpoints must carry one


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _tiny(name, size=32, channels=1, **kw):
    cfg = dict(NEW[name], width=8, **kw)
    if name != "skip-ganomaly":
        cfg.setdefault("nz", 12)
    return create(name, gan_preprocess(size, channels), **cfg).eval()


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3)])
def test_output_shapes_and_signs(name, size, channels):
    model = _tiny(name, size, channels)
    with torch.no_grad():
        out = model(torch.rand(3, channels, size, size))
    assert list(out) == list(model.output_names) == ["score", "anomaly_map"]
    assert out["score"].shape == (3,) and out["anomaly_map"].shape == (3, size, size)
    assert torch.isfinite(out["score"]).all() and (out["anomaly_map"] >= -1e-6).all()
    rebuilt = create(name, model.preprocess, **model.config())  # config() is what a checkpoint stores
    assert rebuilt.config() == model.config()
    rebuilt.load_state_dict(model.state_dict())


def test_ae_l2_map_and_score():
    model = _tiny("ae")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        xn = model.normalize(x)
        want = (xn - model.net(xn)).pow(2).mean(1)
    assert torch.allclose(out["anomaly_map"], want) and torch.allclose(out["score"], want.mean((1, 2)))


def _ssim_at(a: np.ndarray, b: np.ndarray, i: int, j: int, window: int) -> float:
    """SSIM of two single-channel images at pixel (i, j), straight from the definition."""
    ax = np.arange(window) - (window - 1) / 2
    g = np.exp(-ax ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    r = window // 2
    pa, pb = a[i - r:i + r + 1, j - r:j + r + 1], b[i - r:i + r + 1, j - r:j + r + 1]
    ma, mb = (w * pa).sum(), (w * pb).sum()
    va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
    cov = (w * (pa - ma) * (pb - mb)).sum()
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))


def test_ssim_matches_its_definition_and_is_one_for_equal_images():
    window = ssim_window(32)
    assert window % 2 == 1 and ssim_window(128) == 11
    ssim = SSIM(1, window)
    a = torch.rand(1, 1, 32, 32) * 2 - 1
    b = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    got = ssim(a, b)[0]
    for i, j in [(10, 12), (16, 16), (20, 7)]:
        assert abs(float(got[i, j]) - _ssim_at(a[0, 0].double().numpy(), b[0, 0].double().numpy(), i, j, window)) < 1e-5
    assert torch.allclose(ssim(a, a), torch.ones(1, 32, 32), atol=1e-5)
    model = ConvAE(gan_preprocess(32, 1), nz=12, width=8, loss="ssim").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 32))
    assert model.extra_metadata()["loss"] == "ssim" and (out["anomaly_map"] <= 2.0).all()


def test_vae_scores_the_posterior_mean_deterministically():
    model = _tiny("vae")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
        xn = model.normalize(x)
        mu, logvar = model.encode(xn)
        want = (xn - model.decoder(mu)).pow(2).mean(1)
    assert torch.equal(a["score"], b["score"]) and torch.allclose(a["anomaly_map"], want)
    with_kl = VAE(model.preprocess, nz=12, width=8, score_kl=True).eval()
    with_kl.load_state_dict(model.state_dict())
    with torch.no_grad():
        s = with_kl(x)["score"]
    assert torch.allclose(s, a["score"] + kl_divergence(mu, logvar) / (32 * 32))
    assert torch.allclose(kl_divergence(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)), torch.zeros(1))


def test_residual_vae_depth_and_identity_blocks():
    count = {b: sum(isinstance(m, PreActBlock) for m in ResidualVAE(gan_preprocess(32, 1), nz=8, width=8, blocks=b).modules())
             for b in (0, 1, 3)}
    assert count == {0: 0, 1: 8, 3: 24}  # 4 scales (32, 16, 8, 4) in the encoder and 4 in the decoder
    block = PreActBlock(4).eval()
    torch.nn.init.zeros_(block.branch[-1].weight)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), x)  # the identity path is clean: a zero branch is the identity


def test_oe_sdn_map_is_the_difference_of_its_two_networks():
    model = _tiny("oe-sdn")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        xn = model.normalize(x)
        want = (model.sdn(xn) - model.ae(xn)).abs().mean(1)
        out = model(x)
    assert torch.allclose(out["anomaly_map"], want) and torch.allclose(out["score"], want.mean((1, 2)))


def test_rotated_outliers_are_quarter_turns_never_the_image_itself():
    x = torch.arange(4 * 8 * 8, dtype=torch.float32).view(4, 1, 8, 8)
    torch.manual_seed(1)
    r = rotate_outliers(x)
    for i in range(4):
        turns = [k for k in (1, 2, 3) if torch.equal(r[i], torch.rot90(x[i], k, (1, 2)))]
        assert len(turns) == 1 and not torch.equal(r[i], x[i])


def test_anogan_izi_f_score_and_map():
    model = _tiny("anogan", kappa=0.5)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        xn = model.normalize(x)
        x_hat = model.generator(model.encoder(xn))
        f = model.discriminator.features
        want = (xn - x_hat).pow(2).mean((1, 2, 3)) + 0.5 * (f(xn) - f(x_hat)).pow(2).mean((1, 2, 3))
    assert torch.allclose(out["score"], want, rtol=1e-5) and torch.allclose(out["anomaly_map"], (xn - x_hat).abs().mean(1))


def test_latent_search_lowers_the_anogan_loss_and_runs_through_the_engine():
    from edgeano.models.checkpoint import checkpoint_metadata
    from edgeano.models.runner import TorchRunner
    from edgeano.runtime.engine import Engine

    model = _tiny("anogan")
    x = torch.rand(3, 1, 32, 32)
    start = latent_search(model, x, steps=0)["score"]
    after = latent_search(model, x, steps=30, lr=0.05)["score"]
    assert (after < start).all()
    with torch.no_grad():  # the score is the paper's loss at the found z
        z0 = torch.randn(3, 12, 1, 1, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(start, search_loss(model, model.normalize(x), z0, 0.1)[0], rtol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # the search froze them only while it ran
    eng = Engine(TorchRunner(LatentSearch(model, steps=3)), checkpoint_metadata(model, UNTRAINED))
    frames = [np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8) for i in range(2)]
    res = eng.score(frames)  # TorchRunner runs in inference mode; the search needs autograd inside it
    assert res.scores.shape == (2,) and np.isfinite(res.scores).all() and res.maps.shape == (2, 32, 32)


def test_egbad_score_weighs_residual_and_feature_matching():
    model = _tiny("egbad", alpha=0.7)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out, again = model(x), model(x)  # D's dropout is off in eval mode
        xn = model.normalize(x)
        z = model.encoder(xn)
        x_hat = model.generator(z)
        f = model.discriminator.features
        want = 0.7 * (xn - x_hat).abs().sum((1, 2, 3)) + 0.3 * (f(xn, z) - f(x_hat, z)).abs().sum((1, 2, 3))
    assert torch.equal(out["score"], again["score"]) and torch.allclose(out["score"], want, rtol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        EGBAD(gan_preprocess(32, 1), alpha=1.5)


@pytest.mark.parametrize("name,scoring,training_only", [("anogan", "/model/features/", "classifier"),
                                                         ("egbad", "/model/joint/", "logit")])
def test_discriminator_logits_are_not_in_the_exported_graph(name, scoring, training_only, tmp_path):
    import onnx

    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata

    model = _tiny(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", checkpoint_metadata(model, UNTRAINED))
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert not any(training_only in n for n in names)  # the real/fake logit is training-only
    assert any(n.startswith(scoring) for n in names)  # the discriminator features the score uses are in


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_anogan_encoder_phase_trains_only_the_encoder():
    model = AnoGAN(gan_preprocess(32, 1), nz=12, width=8)
    step = AnoGANStep(model, lr=1e-3, second_phase_from=1)
    x = torch.rand(8, 1, 32, 32)
    assert step.begin_epoch(0) == "gan"
    g, e = _params(model.generator), _params(model.encoder)
    assert set(step(x)) == {"g", "d"}
    assert not _same(g, _params(model.generator)) and _same(e, _params(model.encoder))
    assert step.begin_epoch(1) == "encoder"
    assert not model.generator.training and not model.discriminator.training and model.encoder.training
    g, d, e = _params(model.generator), _params(model.discriminator), _params(model.encoder)
    assert set(step(x)) == {"izi_f"}
    assert _same(g, _params(model.generator)) and _same(d, _params(model.discriminator))
    assert not _same(e, _params(model.encoder))


def test_oe_sdn_second_phase_distils_into_the_sdn_only():
    model = OESDN(gan_preprocess(32, 1), nz=12, width=8)
    step = OESDNStep(model, lr=1e-3, second_phase_from=1)
    x = torch.rand(8, 1, 32, 32)
    assert step.begin_epoch(0) == "ae"
    s = _params(model.sdn)
    step(x)
    assert _same(s, _params(model.sdn))
    assert step.begin_epoch(1) == "sdn" and not model.ae.training and model.sdn.training
    a, s = _params(model.ae), _params(model.sdn)
    losses = step(x)
    assert _same(a, _params(model.ae)) and not _same(s, _params(model.sdn))
    assert losses["sdn"] == pytest.approx(losses["distill"] + 0.5 * losses["oe"], rel=1e-5)


def test_residual_vae_step_clips_the_gradient_norm():
    model = ResidualVAE(gan_preprocess(32, 1), nz=8, width=8, blocks=2)
    step = ReconstructionStep(model, lr=1e-3, clip=1e-3)
    seen = []
    real_step = step.opt.step

    def observe(*a, **kw):  # the optimiser's own step, after recording what it is about to apply
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))))
        return real_step(*a, **kw)

    step.opt.step = observe
    step.begin_epoch(0)
    losses = step(torch.rand(8, 1, 32, 32))
    assert losses["gnorm"] > 1e-3 and seen[0] <= 1e-3 * 1.0001  # reported before clipping, applied after
    assert {"loss", "rec", "kl", "gnorm"} == set(losses)
