"""`edgeano calibrate --target cpu`: the x86 CPU form of INT8 (unsigned asymmetric activations,
per-channel weights, int32 biases), scored by ONNX Runtime like the FP32 model within the INT8 tolerances of the parity
suite, and kept away from TensorRT, which needs the symmetric form."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.artifact import read_onnx_metadata
from edgeano.calibration.graph import tensorrt_problems
from edgeano.cli.main import cli
from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.evaluation.metrics import auroc, rank_correlation
from edgeano.runtime.engine import Engine


@pytest.fixture(scope="module")
def cpu_int8(gaussian_onnx, texture_data, tmp_path_factory):
    import shutil

    src = tmp_path_factory.mktemp("cpu_int8") / "model.onnx"
    shutil.copy(gaussian_onnx, src)
    r = CliRunner().invoke(cli, ["calibrate", str(src), "--data", str(texture_data), "--num", "16", "--target", "cpu"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = src.with_name("model.cpu.int8.onnx")  # beside the TensorRT form's default name, never over it
    assert out.is_file() and f"edgeano bench --model {out} --backend onnxruntime" in r.output
    return src, out


def test_cpu_form_is_recorded_and_not_tensorrt(cpu_int8):
    import onnx

    _, out = cpu_int8
    meta = read_onnx_metadata(out)
    assert meta["precision"] == "int8"
    assert meta["calibration"]["target"] == "cpu" and meta["calibration"]["weight_bits"] == 8
    problems = tensorrt_problems(onnx.load(str(out)))
    assert any("zero point" in p for p in problems) and any("INT32 dequantize" in p for p in problems)
    from edgeano.runtime.trt_build import inspect_onnx

    with pytest.raises(EdgeanoError, match="CPU form of INT8") as e:
        inspect_onnx(out)
    assert e.value.exit_code == EXIT_USAGE


def test_cpu_form_scores_like_fp32(cpu_int8, texture_data):
    src, out = cpu_int8
    items = load_dataset(texture_data, need_test=True).test
    frames, labels = [read_image(t.path) for t in items], np.array([t.label for t in items])
    with Engine.load(src, backend="onnxruntime") as a, Engine.load(out, backend="onnxruntime") as b:
        fp32, int8 = a.score(frames).scores, b.score(frames).scores
    assert rank_correlation(fp32, int8) >= 0.9  # the parity suite's INT8 tolerances
    assert auroc(labels, fp32) - auroc(labels, int8) <= 0.05
