"""Shared fixtures. Tests that must always run build their own small data; tests on the real
MTD data (`../shared/data`) are marked `data` and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EDGEANO_SHARED_DATA", ROOT.parent / "shared" / "data"))
MTD = SHARED_DATA / "mtd"
VIDEO = SHARED_DATA / "video" / "bottle-detection.mp4"


@pytest.fixture(scope="session")
def texture_data(tmp_path_factory) -> Path:
    """A small MVTec-layout data set (64 px) from the bundled texture: 40 train, 12 good + 3x6 defects."""
    from edgeano.data.synthetic import make_texture_dataset

    return make_texture_dataset(tmp_path_factory.mktemp("texture"), n_train=40, n_test_good=12, n_test_bad=6, size=64, seed=0)


@pytest.fixture(scope="session")
def mtd() -> Path:
    if not (MTD / "train" / "good").is_dir():
        pytest.skip(f"real MTD data not found at {MTD}")
    return MTD


@pytest.fixture(scope="session")
def gaussian_run(texture_data, tmp_path_factory) -> Path:
    """A fitted Gaussian checkpoint (Lite0, 64 px) on `texture_data`: .../gaussian/fixture/weights/best.pt."""
    from edgeano.train.gaussian import train

    return Path(train(data=str(texture_data), img_size=64, out=str(tmp_path_factory.mktemp("runs")), name="fixture"))


@pytest.fixture(scope="session")
def gaussian_onnx(gaussian_run, tmp_path_factory) -> Path:
    """`gaussian_run` exported to ONNX (opset 17, batch 1) with its artifact metadata: what `edgeano run` loads."""
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint

    model, ckpt = load_checkpoint(gaussian_run)
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "gaussian.onnx", checkpoint_metadata(model, ckpt))


TINY_GAN = dict(img_size=32, width=8, nz=16, epochs=2, batch=8, seed=0, progress=False, quiet=True)
# GANomaly fixtures train with per-image contrast normalisation (the MTD setting), Skip-GANomaly without,
# so export/FP16/INT8 parity covers both forms of the input layer. The same alternation for the rest.
GAN_CONTRAST = {"ganomaly": "standardize", "skip-ganomaly": "none"}
MODEL_CONTRAST = {"anogan": "standardize", "egbad": "none", "ae": "standardize", "vae": "none", "rvae": "standardize",
                  "oe-sdn": "none"}
LOOP_MODELS = tuple(GAN_CONTRAST) + tuple(MODEL_CONTRAST)  # every model edgeano.train.loop trains
MODEL_OPTIONS = {"ae": {"loss": "ssim"}}  # the SSIM map's graph through the parity suite (the VAEs cover L2)


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the session's training fixtures ran (bitwise resume/parity comparisons
    need the same count; tiny nets are faster so too). torch imported here, not at the top: a
    device without torch still collects the suite."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gan(name: str, **over) -> dict:
    """train() keywords of the `gan_runs` / `model_runs` fixtures for model `name`, with overrides."""
    from edgeano.train.loop import RECIPES

    kw = dict(TINY_GAN, contrast={**GAN_CONTRAST, **MODEL_CONTRAST}[name], **MODEL_OPTIONS.get(name, {}))
    kw.update(over)
    if "nz" not in RECIPES[name].config:
        kw.pop("nz")
    return kw


def _tiny_runs(models, data, out) -> dict:
    import torch

    from edgeano.train.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: thread hand-offs cost more than the convs (3-10x on a busy 2-core box)
    try:
        return {m: train(m, data, out=out, name="fixture", **tiny_gan(m)) for m in models}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def gan_runs(texture_data, tmp_path_factory) -> dict:
    """Tiny GANomaly and Skip-GANomaly (32 px, width 8, 2 epochs) on `texture_data`: {model: train() result}."""
    return _tiny_runs(GAN_CONTRAST, texture_data, tmp_path_factory.mktemp("gan-runs"))


@pytest.fixture(scope="session")
def model_runs(texture_data, tmp_path_factory) -> dict:
    """Tiny AnoGAN, EGBAD, AE, VAE, Residual VAE and OE-SDN (32 px, width 8, 2 epochs: the two-phase
    models one epoch per phase) on `texture_data`: {model: train() result}."""
    return _tiny_runs(MODEL_CONTRAST, texture_data, tmp_path_factory.mktemp("model-runs"))


@pytest.fixture(scope="session")
def exported(request, texture_data, tmp_path_factory):
    """`edgeano export --fp16 --int8` of the Gaussian and GANomaly fixtures, as a user runs it:
    {model: {"fp32"|"fp16"|"int8": ONNX path, "golden": the golden file}} (made once, lazily per model)."""
    from edgeano.export.pipeline import run_export

    made = {}

    def get(name: str) -> dict:
        if name not in made:
            ckpt = request.getfixturevalue("gaussian_run") if name == "gaussian" else \
                Path(request.getfixturevalue("gan_runs")[name]["best"])
            out = tmp_path_factory.mktemp(f"exported-{name}") / "best.onnx"
            paths = run_export(str(ckpt), 17, False, str(out), True, True, str(texture_data), 16, "minmax", build=False)
            made[name] = {**{k: Path(v) for k, v in paths.items()}, "golden": out.with_name("best.golden.npz")}
        return made[name]

    return get


def _needs_torch_at_import(path: Path) -> bool:
    import re

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return bool(re.search(r"^(import torch|from torch|from edgeano\.(models|train|export\.(onnx_export|pipeline)))\b",
                          text, re.M))


def pytest_ignore_collect(collection_path, config):
    """On a device without torch (a Jetson), `pytest -m tensorrt` still collects: test modules that
    import torch (or our torch-side modules) at import time are left out there."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    try:
        import torch  # noqa: F401
    except ImportError:
        return True if _needs_torch_at_import(collection_path) else None
    return None


# CI must not skip a test whose real part it could have installed (.ci/run sets this): a skip
# there fails, unless its reason is hardware this kind of machine never has.
HARDWARE_REASONS = ("TensorRT", "GPU", "CUDA", "bf16", "VNNI", "this CPU has")


def _skip_is_allowed(report) -> bool:
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    return any(word in reason for word in HARDWARE_REASONS)


def _fail_forbidden_skip(report) -> None:
    if os.environ.get("EDGEANO_REQUIRE_REAL_PARTS") and report.skipped and not _skip_is_allowed(report):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome, report.longrepr = "failed", f"EDGEANO_REQUIRE_REAL_PARTS is set but this skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())
