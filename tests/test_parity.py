"""Engines vs PyTorch: one suite over every backend x precision this machine has.

Each case loads the artifact the way a user does (`Engine.load(path)`) and compares it with
`Engine(TorchRunner(model), meta)` on the same real images (crops of the bundled texture photo;
MTD in the `data` variant). FP32/FP16 compare raw scores and maps; INT8 compares the ranking
(Spearman, AUROC), since 8-bit activations shift raw values by design.

Models: the Gaussian model (`gaussian_run` fixture), GANomaly and Skip-GANomaly (`gan_runs`), and
AnoGAN, EGBAD, AE, VAE, Residual VAE, OE-SDN (`model_runs`): 32 px, width 8, trained 2 epochs on the
texture set with edgeano.train.loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import GAN_CONTRAST, LOOP_MODELS
from edgeano.compare import TOLERANCES, compare
from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.runtime.engine import Engine
from edgeano.runtime.tensorrt import tensorrt_available

# The tolerances live in edgeano.compare.TOLERANCES (one table for these tests, the export check,
# the FP16/INT8 reports and `edgeano verify`); rank metrics are enforced here because the test set
# is labelled (normal and anomalous images).
CALIB_NUM = 16  # calibration images in tests: enough for stable ranges on 64 px, fast
PARITY_MODELS = ("gaussian",) + LOOP_MODELS  # every registered model


BACKENDS = ("onnxruntime", "tensorrt")  # the backends this suite builds artifacts for
CASES = [pytest.param(b, p, id=f"{b}-{p}", marks=[pytest.mark.tensorrt] if b == "tensorrt" else [])
         for (b, p) in TOLERANCES if b in BACKENDS]


# -- models and artifacts ------------------------------------------------------------------------
class Artifacts:
    """PyTorch reference + the ONNX of each precision for one checkpoint, made once per module."""

    def __init__(self, ckpt: Path, calib_dir: Path, workdir: Path):
        from edgeano.export.onnx_export import export_onnx
        from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
        from edgeano.models.runner import TorchRunner

        self.model, ckpt_dict = load_checkpoint(ckpt)
        self.meta = checkpoint_metadata(self.model, ckpt_dict)
        self.calib_dir, self.dir = calib_dir, workdir
        self.paths = {"fp32": export_onnx(self.model, workdir / "model.onnx", self.meta)}
        # after the export: torch.onnx.export restores the wrapper's train() mode onto the model
        self.torch = Engine(TorchRunner(self.model), self.meta)

    def onnx(self, precision: str) -> Path:
        if precision not in self.paths:
            src, dst = self.paths["fp32"], self.dir / f"model.{precision}.onnx"
            if precision == "fp16":
                from edgeano.calibration.reader import calibration_paths, load_frames
                from edgeano.export.fp16 import to_fp16

                # one probe frame: to_fp16 runs its probe as one batch, and exports are batch 1 by default
                to_fp16(src, dst, frames=load_frames(calibration_paths(self.calib_dir, 1)))
            else:
                from edgeano.calibration.quantize import calibrate_onnx

                calibrate_onnx(src, dst, self.calib_dir, num=CALIB_NUM, progress=False, verbose=False)
            self.paths[precision] = dst
        return self.paths[precision]

    def engine(self, backend: str, precision: str) -> Engine:
        path = self.onnx(precision)
        if backend == "onnxruntime":
            return Engine.load(path)
        from edgeano.runtime.trt_build import build_engine

        engine_path = path.with_suffix(".engine")
        if not engine_path.exists():
            build_engine(path, engine_path, precision=precision)
        return Engine.load(engine_path)


@pytest.fixture(scope="module")
def artifacts(request, texture_data, tmp_path_factory):
    made = {}

    def get(name: str) -> Artifacts:
        if name not in made:
            if name == "gaussian":
                ckpt = request.getfixturevalue("gaussian_run")  # lazily: a device without torch never asks
            else:
                runs = request.getfixturevalue("gan_runs" if name in GAN_CONTRAST else "model_runs")
                ckpt = Path(runs[name]["best"])
            made[name] = Artifacts(ckpt, texture_data, tmp_path_factory.mktemp(f"parity_{name}"))
        return made[name]

    return get


def _test_set(root: Path, per_class: int = 0):
    """Real test images and labels (all of them, or `per_class` of each defect class and of good)."""
    items = load_dataset(root, need_test=True).test
    if per_class:
        by_class = {}
        for t in items:
            by_class.setdefault(t.defect, []).append(t)
        items = [t for ts in by_class.values() for t in ts[:per_class]]
    frames = [read_image(t.path) for t in items]
    return [f for f in frames if f is not None], np.array([t.label for t, f in zip(items, frames) if f is not None])


# -- the comparison ----------------------------------------------------------------------------------
def check_against_torch(ref: Engine, eng: Engine, frames, labels, tol) -> None:
    """The one comparator (edgeano.compare) on the Engines' raw outputs for the same images."""
    x = ref.preprocess.batch(frames)
    result = compare(eng.infer(x), ref.infer(x), tol, labels, threshold=ref.threshold)
    assert result.passed, result.summary() + "\n" + "\n".join(result.lines())


@pytest.mark.parametrize("model", PARITY_MODELS)
@pytest.mark.parametrize("backend,precision", CASES)
def test_engine_matches_pytorch(backend, precision, model, artifacts, texture_data):
    if backend == "tensorrt":
        ok, why = tensorrt_available()
        if not ok:
            pytest.skip(why)
    try:
        import torch  # noqa: F401
    except ImportError:  # a device: the golden comparison (test_tensorrt_engines.py) runs there instead
        pytest.skip("needs torch for the PyTorch reference; on a device without it see test_tensorrt_engines.py")
    art = artifacts(model)
    frames, labels = _test_set(texture_data)
    with art.engine(backend, precision) as eng:
        assert eng.meta.get("precision", "fp32") == precision
        check_against_torch(art.torch, eng, frames, labels, TOLERANCES[(backend, precision)])


# -- the same on real MTD photos (a Gaussian fitted on 40 MTD images at 64 px) ------------------------
@pytest.fixture(scope="module")
def mtd_artifacts(mtd, tmp_path_factory):
    from edgeano.models.checkpoint import save_checkpoint
    from edgeano.train.gaussian import fit_gaussian

    paths = load_dataset(mtd).train
    model, meta = fit_gaussian(paths[:: max(1, len(paths) // 40)][:40], img_size=64)
    root = tmp_path_factory.mktemp("parity_mtd")
    return Artifacts(save_checkpoint(root / "mtd.pt", model, meta), mtd, root)


@pytest.mark.data
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_matches_pytorch_on_mtd(precision, mtd_artifacts, mtd):
    frames, labels = _test_set(mtd, per_class=6)
    with mtd_artifacts.engine("onnxruntime", precision) as eng:
        check_against_torch(mtd_artifacts.torch, eng, frames, labels, TOLERANCES[("onnxruntime", precision)])
