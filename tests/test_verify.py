"""The golden reference and `edgeano verify`: export writes PyTorch's outputs on a few training
images; verify runs any artifact on them torch-free and compares with the parity tolerances."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.artifact import read_onnx_metadata
from edgeano.golden import N_IMAGES, read_golden, verify_artifact

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def verify_cli(*args):
    from edgeano.cli.main import cli

    return CliRunner().invoke(cli, ["verify", *map(str, args)])


def test_export_writes_the_golden_file_and_every_artifact_points_to_it(exported):
    art = exported("gaussian")
    golden = read_golden(art["golden"])
    n = 2 * N_IMAGES  # good images and a synthetic-defect copy of each
    assert golden.inputs.shape == (n, 3, 64, 64) and golden.inputs.dtype == np.float32
    assert golden.labels.tolist() == [0] * N_IMAGES + [1] * N_IMAGES
    assert not np.array_equal(golden.inputs[:N_IMAGES], golden.inputs[N_IMAGES:])
    assert set(golden.outputs) == {"score", "anomaly_map"} and golden.outputs["score"].shape == (n,)
    assert golden.outputs["anomaly_map"].shape == (n, 64, 64)  # the Gaussian model's map, verified like the score
    # the defective copies reach the threshold's scale, where good images stay far below it
    s, thr = golden.outputs["score"], read_onnx_metadata(art["fp32"])["threshold"]["value"]
    assert s[N_IMAGES:].max() > 0.5 * thr > 2 * np.median(s[:N_IMAGES])
    assert golden.meta["model"] == "gaussian" and "images from" in golden.meta["source"] and golden.meta["torch"]
    for precision in ("fp32", "fp16", "int8"):
        assert read_onnx_metadata(art[precision])["golden"] == "best.golden.npz"
    assert art["golden"].stat().st_size < 1_000_000


@pytest.mark.parametrize("model", ["gaussian", "ganomaly"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_verify_passes_on_every_onnx_precision(exported, model, precision):
    result = verify_cli(exported(model)[precision], "--backend", "onnxruntime")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("verify ") and f"(onnxruntime-{precision})" in lines[0] and f"{N_IMAGES} good + {N_IMAGES} synthetic-defect golden images" in lines[0]
    outputs = {"score", "anomaly_map"}  # both models have a map
    assert {ln.split()[0] for ln in lines[1:1 + len(outputs)]} == outputs  # one line per output
    assert all(" ok " in ln for ln in lines[1:1 + len(outputs)])


def test_verify_fails_naming_the_metric_on_altered_weights(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    art = exported("gaussian")
    model = onnx.load(str(art["fp32"]))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * 1.05, biggest.name))
    altered = art["fp32"].with_name("altered.onnx")  # beside the golden file its metadata names
    onnx.save(model, str(altered))
    result = verify_cli(altered, "--backend", "onnxruntime", "--json", tmp_path / "v.json")
    assert result.exit_code == 1
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "differs from PyTorch: score.max_rel" in errors[0] and "> 0.0001" in errors[0]
    assert any(ln.split()[:2] == ["score", "FAIL"] for ln in result.output.splitlines())
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["passed"] is False and rep["failures"] == ["score.max_rel"]


def test_verify_is_torch_free_and_bad_input_is_one_line(exported, tmp_path):
    art = exported("gaussian")
    code = BLOCK_TORCH + f"sys.argv = ['edgeano', 'verify', {str(art['int8'])!r}]; from edgeano.cli.main import main; main()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "onnxruntime-int8" in r.stdout, r.stderr
    lonely = tmp_path / "lonely.onnx"  # no golden beside it
    lonely.write_bytes(art["fp32"].read_bytes())
    for args, code, expected in (((lonely,), 2, "no golden reference found"),
                                 ((tmp_path / "nope.onnx",), 2, "artifact not found"),
                                 ((art["fp32"], "--golden", tmp_path / "nope.npz"), 2, "--golden"),
                                 ((art["fp32"], "--golden", lonely), 2, "not a readable golden file")):
        result = verify_cli(*args)
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert result.exit_code == code and len(lines) == 1 and expected in lines[0], (args, result.output)


def test_golden_of_another_model_is_refused(exported):
    gauss, gan = exported("gaussian"), exported("ganomaly")
    with pytest.raises(Exception, match="belongs to another model"):
        verify_artifact(gan["fp32"], gauss["golden"], backend="onnxruntime")


def test_verify_fails_an_int8_artifact_whose_score_collapsed(exported):
    """On good images alone every score is far below the threshold, so INT8's threshold-scaled bound
    (thr_rel) let an engine that outputs 0 pass; the golden file's defective copies fail it."""
    import onnx
    from onnx import helper, numpy_helper

    art = exported("gaussian")
    model = onnx.load(str(art["int8"]))
    out = next(o for o in model.graph.output if o.name == "score")
    for node in model.graph.node:  # the score's producer now writes an internal tensor, times 0 is the output
        node.output[:] = ["score_before_zero" if o == "score" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    model.graph.node.append(helper.make_node("Mul", ["score_before_zero", "zero"], [out.name]))
    broken = art["int8"].with_name("collapsed.int8.onnx")  # beside the golden file its metadata names
    onnx.save(model, str(broken))
    result = verify_cli(broken, "--backend", "onnxruntime")
    assert result.exit_code == 1, result.output
    assert "score.thr_rel" in result.output
    # the same engine on the good images only: within the bound, which is why the defects are there
    golden = read_golden(art["golden"])
    good = golden.labels == 0
    thr = read_onnx_metadata(art["fp32"])["threshold"]["value"]
    assert np.max(np.abs(golden.outputs["score"][good]) / np.maximum(np.abs(golden.outputs["score"][good]), thr)) <= 0.25
