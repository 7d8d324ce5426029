"""The OpenVINO runner against PyTorch and ONNX Runtime: the same artifact ONNX, the same images,
the one comparator with the parity suite's tolerances (edgeano.compare.TOLERANCES, openvino rows);
the compute precision pinned and reported.

Real OpenVINO (CI installs edgeano[openvino]); the module skips, with the reason, where it is absent.
Models: the Gaussian fixture (64 px), tiny GANomaly and Skip-GANomaly (32 px, `gan_runs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from badinput import Case, run_case
from click.testing import CliRunner

from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.compare import compare, tolerances_for
from edgeano.runtime.engine import Engine

ov_ok, ov_why = __import__("edgeano.runtime.openvino", fromlist=["openvino_available"]).openvino_available()
pytestmark = pytest.mark.skipif(not ov_ok, reason=ov_why)

CALIB_NUM = 16


def _has_bf16() -> bool:
    from edgeano.runtime.openvino import cpu_capabilities

    return "BF16" in cpu_capabilities()


def _has_vnni() -> bool:
    from edgeano.runtime.cpu import cpu_facts

    return bool(cpu_facts()["int8_dot"])


class Made:
    """PyTorch reference and the FP32 (and, on demand, INT8 QDQ) ONNX of one checkpoint."""

    def __init__(self, ckpt: Path, calib_dir: Path, workdir: Path):
        from edgeano.export.onnx_export import export_onnx
        from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
        from edgeano.models.runner import TorchRunner

        model, ckpt_dict = load_checkpoint(ckpt)
        meta = checkpoint_metadata(model, ckpt_dict)
        self.calib_dir, self.dir = calib_dir, workdir
        self.paths = {"fp32": export_onnx(model, workdir / "model.onnx", meta)}
        self.torch = Engine(TorchRunner(model), meta)

    def onnx(self, precision: str) -> Path:
        """fp32 / bf16: the FP32 ONNX; int8: the CPU form (calibrate --target cpu); int8-tensorrt: the TensorRT form."""
        if precision.startswith("int8") and precision not in self.paths:
            from edgeano.calibration.quantize import calibrate_onnx

            target = "tensorrt" if precision == "int8-tensorrt" else "cpu"
            self.paths[precision] = self.dir / f"model.{target}.int8.onnx"
            calibrate_onnx(self.paths["fp32"], self.paths[precision], self.calib_dir, num=CALIB_NUM, progress=False,
                           verbose=False, target=target)
        return self.paths["fp32" if precision == "bf16" else precision]


@pytest.fixture(scope="module")
def made(request, gaussian_run, texture_data, tmp_path_factory):
    cache = {}

    def get(name: str) -> Made:
        if name not in cache:
            ckpt = gaussian_run if name == "gaussian" else Path(request.getfixturevalue("gan_runs")[name]["best"])
            cache[name] = Made(ckpt, texture_data, tmp_path_factory.mktemp(f"ov_{name}"))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def test_set(texture_data):
    items = load_dataset(texture_data, need_test=True).test
    frames = [read_image(t.path) for t in items]
    return frames, np.array([t.label for t in items])


def check(ref: Engine, got: Engine, frames, labels, precision: str) -> None:
    """The one comparator (edgeano.compare) with the parity suite's OpenVINO rows."""
    x = ref.preprocess.batch(frames)
    result = compare(got.infer(x), ref.infer(x), tolerances_for("openvino", precision), labels, threshold=ref.threshold)
    assert result.passed, result.summary() + "\n" + "\n".join(result.lines())


# INT8 (where the CPU has VNNI) on the Gaussian model and GANomaly: a third calibration would cost suite
# time for the same kernels
CASES = [(m, p) for m in ("gaussian", "ganomaly", "skip-ganomaly") for p in ("fp32", "bf16")] + \
        [("gaussian", "int8"), ("ganomaly", "int8")]


@pytest.mark.parametrize("model,precision", CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_openvino_matches_pytorch(precision, model, made, test_set):
    if precision == "bf16" and not _has_bf16():
        pytest.skip("this CPU has no bf16 (OpenVINO capabilities lack BF16): the bf16 case needs AVX512_BF16 or AMX")
    if precision == "int8" and not _has_vnni():
        pytest.skip("this CPU has no VNNI: the runner refuses INT8 here (test_int8_without_vnni_is_refused)")
    art = made(model)
    frames, labels = test_set
    with Engine.load(art.onnx(precision), backend="openvino", precision="bf16" if precision == "bf16" else "fp32") as eng:
        assert eng.name == f"openvino-{precision}" + ("+fp32" if precision == "int8" else "")
        assert eng.precision == precision
        check(art.torch, eng, frames, labels, precision)


def test_fp32_is_pinned_and_matches_onnxruntime(made, test_set):
    """What OpenVINO compiled is f32 (it would pick bf16 by itself on a bf16 CPU), and its scores
    are ONNX Runtime's to float32 kernel-order noise."""
    path = made("gaussian").onnx("fp32")
    frames, _ = test_set
    with Engine.load(path, backend="openvino", threads=1) as ov, Engine.load(path, backend="onnxruntime") as ort:
        assert str(ov.runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()) == "f32"
        assert ov.runner.threads == 1
        a, b = ort.score(frames).scores, ov.score(frames).scores
        np.testing.assert_allclose(b, a, rtol=1e-4)


def test_bf16_refused_where_the_cpu_has_none(made):
    if _has_bf16():
        pytest.skip("this CPU has bf16; the refusal is for CPUs without it")
    with pytest.raises(EdgeanoError, match="this CPU has no bf16") as e:
        Engine.load(made("gaussian").onnx("fp32"), backend="openvino", precision="bf16")
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("form", ["int8", "int8-tensorrt"])
def test_int8_without_vnni_is_refused(form, made, test_set):
    """OpenVINO's INT8 came out wrong on an AVX2-only CPU (both forms; see the runner): refused there
    in one line naming what to run instead; with VNNI the TensorRT form must match like the CPU form."""
    path = made("gaussian").onnx(form)
    if _has_vnni():
        frames, labels = test_set
        with Engine.load(path, backend="openvino") as eng:
            check(made("gaussian").torch, eng, frames, labels, "int8")
        return
    with pytest.raises(EdgeanoError, match="without VNNI.*--backend onnxruntime") as e:
        Engine.load(path, backend="openvino")
    assert e.value.exit_code == EXIT_USAGE


def test_metadata_checked_against_the_network(made, tmp_path):
    from edgeano.artifact import load_onnx, read_onnx_metadata, set_onnx_metadata

    src = made("gaussian").onnx("fp32")
    meta = read_onnx_metadata(src)
    model = load_onnx(src)
    set_onnx_metadata(model, dict(meta, input=dict(meta["input"], size=[96, 96])))
    bad = tmp_path / "tampered.onnx"
    bad.write_bytes(model.SerializeToString())
    with pytest.raises(EdgeanoError, match=r"tampered\.onnx: metadata input\.size\[0\] \(height\) is 96") as e:
        Engine.load(bad, backend="openvino")
    assert e.value.exit_code == EXIT_USAGE


def test_bench_and_eval_record_the_precision(made, texture_data, tmp_path):
    from edgeano.cli.main import cli

    path = made("ganomaly").onnx("fp32")
    js = tmp_path / "bench.json"
    r = CliRunner().invoke(cli, ["bench", "--model", str(path), "--backend", "openvino", "--iters", "3", "--warmup", "1",
                                 "--threads", "1", "--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert res["backend"] == "openvino-fp32" and res["precision"] == "fp32" and res["threads"] == 1
    assert res["gmac_per_image"] > 0 and "GMAC/image" in r.output
    js = tmp_path / "eval.json"
    r = CliRunner().invoke(cli, ["eval", "--model", str(path), "--data", str(texture_data), "--backend", "openvino",
                                 "--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "openvino-fp32, computing in fp32" in r.output
    assert json.loads(js.read_text())["precision"] == "fp32"


BAD = [
    Case("bench-bf16-without-openvino", ["bench", "--model", "{onnx}", "--precision", "bf16"], EXIT_USAGE,
         r"--precision bf16 is the OpenVINO runner's compute precision: add --backend openvino"),
    Case("bench-openvino-engine-file", ["bench", "--model", "{engine}", "--backend", "openvino"], EXIT_USAGE,
         r"is a TensorRT engine; OpenVINO needs the \.onnx"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_flags(case, gaussian_onnx, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    run_case(case, tmp_path, {"onnx": str(gaussian_onnx), "engine": str(engine)})
