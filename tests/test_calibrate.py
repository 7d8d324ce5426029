"""`edgeano calibrate` as a user runs it: INT8 QDQ ONNX + report, head kept float, one-line
errors, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeano.artifact import read_onnx_metadata
from edgeano.calibration.graph import FEATURE_OPS, tensorrt_problems
from edgeano.calibration.quantize import report_path
from edgeano.cli.main import cli

NUM = 16  # calibration images: small and fast, still real images


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _files(folder: Path):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def fp32_onnx(gaussian_run, tmp_path_factory) -> Path:
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint

    model, ckpt = load_checkpoint(gaussian_run)
    return export_onnx(model, tmp_path_factory.mktemp("calib") / "model.onnx", checkpoint_metadata(model, ckpt))


@pytest.fixture(scope="module")
def calibrated(fp32_onnx, texture_data):
    r = _invoke("calibrate", fp32_onnx, "--data", texture_data, "--num", NUM, "--eval", texture_data)
    assert r.exit_code == 0, r.output
    out = fp32_onnx.with_name("model.int8.onnx")  # the default output path
    return out, json.loads(report_path(out).read_text()), r.output


def test_report_fields_and_next_step(calibrated, fp32_onnx):
    out, rep, output = calibrated
    assert rep["int8"] == str(out) and rep["fp32"] == str(fp32_onnx)
    n = rep["normal"]
    assert n["n"] == NUM
    for key in ("pearson", "spearman", "max_abs_diff", "max_rel_diff", "label_flips", "flagged_fp32", "flagged_int8"):
        assert key in n
    assert 0 <= n["label_flips"] <= NUM and n["max_abs_diff"] > 0  # INT8 does change raw scores
    e = rep["eval"]
    assert e["n_normal"] == 12 and e["n_anomalous"] == 18
    assert 0 <= e["auroc_int8"] <= 1 and e["auroc_drop_points"] == pytest.approx((e["auroc_fp32"] - e["auroc_int8"]) * 100)
    assert e["spearman"] > 0.8  # ranking over normal + anomalous images survives INT8
    assert "kept the FP32 threshold" in rep["threshold_policy"]
    assert "pearson" in output and "AUROC" in output
    assert f"next: edgeano build {out} --precision int8" in output


def test_int8_metadata(calibrated, fp32_onnx):
    out, rep, _ = calibrated
    meta, src = read_onnx_metadata(out), read_onnx_metadata(fp32_onnx)
    assert meta["precision"] == "int8"
    cal = meta["calibration"]
    assert cal["method"] == "minmax" and cal["images"] == NUM and cal["excluded_nodes"] == rep["excluded_nodes"]
    assert meta["threshold"]["value"] == src["threshold"]["value"]  # kept, see report.py
    assert meta["input"] == src["input"] and meta["outputs"] == src["outputs"]


def test_graph_is_tensorrt_qdq_with_float_head(calibrated):
    out, rep, _ = calibrated
    model = onnx.load(str(out))
    assert tensorrt_problems(model) == []
    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    head = rep["excluded_nodes"]
    # the Mahalanobis head (MatMul with the precision factor, the sums) is excluded, present, and reads floats
    assert {"MatMul", "ReduceSum"} <= {nodes[h].op_type for h in head if h in nodes}
    for name in head:
        assert name in nodes, f"excluded node {name} missing from the INT8 graph"
        for t in nodes[name].input:
            assert getattr(producer.get(t), "op_type", "") != "DequantizeLinear", f"{name} reads an INT8 tensor"
    # the systematic INT8 shift of what enters the head is corrected there, in float
    assert rep["bias_correction"], "no bias correction on the head inputs"
    for name in rep["bias_correction"]:
        add = nodes[name]
        assert add.op_type == "Add" and any(add.output[0] in nodes[h].input for h in head if h in nodes)
    # mixed precision (the Gaussian default): the stride <= 4 stem stays float, every other
    # convolution runs INT8 (activation and weight both come through DequantizeLinear)
    assert rep["float_stride"] == 4 and rep["float_nodes"]
    float_nodes = set(rep["float_nodes"])
    convs = [n for n in model.graph.node if n.op_type in FEATURE_OPS]
    int8 = [n for n in convs if n.name not in float_nodes]
    assert int8 and all(producer[n.input[0]].op_type == "DequantizeLinear" and producer[n.input[1]].op_type == "DequantizeLinear"
                        for n in int8)
    stem = [n for n in convs if n.name in float_nodes]
    assert stem and all(getattr(producer.get(t), "op_type", "") != "DequantizeLinear" for n in stem for t in n.input[:2])
    assert rep["qdq"]["convolutions_int8"] == len(int8)
    # symmetric: every zero point is 0
    inits = {i.name: i for i in model.graph.initializer}
    zps = [onnx.numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
           if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)


def test_python_api_matches_cli_contract(fp32_onnx, texture_data, tmp_path):
    from edgeano.calibration.quantize import calibrate_onnx

    out = tmp_path / "sub" / "m.onnx"
    rep = calibrate_onnx(fp32_onnx, out, texture_data, num=8, method="percentile", progress=False, verbose=False, float_stride=0)
    assert out.is_file() and report_path(out).is_file()
    assert rep["calibration"]["method"] == "percentile" and rep["normal"]["n"] == 8 and "eval" not in rep
    assert rep["float_nodes"] == [] and rep["qdq"]["convolutions_int8"] == rep["qdq"]["convolutions"]  # all INT8
    assert _files(out.parent) == ["m.onnx", "m.onnx.report.json"]


def _plain_onnx(path: Path) -> Path:
    from onnx import helper, TensorProto

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(g), str(path))
    return path


BAD = {
    "missing model": (lambda d, fp, td: [d / "nope.onnx", "--data", td], "not found"),
    "not edgeano": (lambda d, fp, td: [_plain_onnx(d / "plain.onnx"), "--data", td], "not an edgeano artifact"),
    "empty data": (lambda d, fp, td: [fp, "--data", (d / "empty").mkdir() or d / "empty"], "no images found"),
    "num < 1": (lambda d, fp, td: [fp, "--data", td, "--num", 0], "--num must be >= 1"),
    "unknown method": (lambda d, fp, td: [fp, "--data", td, "--method", "kl"], "unknown calibration method"),
    "float stride < 0": (lambda d, fp, td: [fp, "--data", td, "--float-stride", -1], "--float-stride must be >= 0"),
    "eval without test/": (lambda d, fp, td: [fp, "--data", td, "--eval", td / "train"], "has no test/ folder"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_nonzero_no_output(case, fp32_onnx, texture_data, tmp_path):
    make_args, expected = BAD[case]
    out = tmp_path / "out" / "x.onnx"
    r = CliRunner().invoke(cli, ["calibrate"] + [str(a) for a in make_args(tmp_path, fp32_onnx, texture_data)] + ["--out", str(out)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code != 0
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], r.output
    assert "Traceback" not in r.output
    assert not out.parent.exists() or _files(out.parent) == []


def test_already_int8_is_refused(calibrated, texture_data, tmp_path):
    out, _, _ = calibrated
    r = _invoke("calibrate", out, "--data", texture_data, "--out", tmp_path / "again.onnx")
    assert r.exit_code != 0 and "already int8" in r.output and not (tmp_path / "again.onnx").exists()


def test_failure_after_quantizing_leaves_no_partial_file(fp32_onnx, texture_data, tmp_path):
    """The eval set is checked only when the report is built, after quantization: a failure there
    must leave the previous output untouched and no temp files behind."""
    bad_eval = tmp_path / "bad_eval"
    for cls in ("good", "crack"):
        (bad_eval / "test" / cls).mkdir(parents=True)
        (bad_eval / "test" / cls / "0.png").write_bytes(b"not a png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.int8.onnx"
    out.write_bytes(b"previous")
    r = _invoke("calibrate", fp32_onnx, "--data", texture_data, "--num", 4, "--eval", bad_eval, "--out", out)
    assert r.exit_code != 0 and "could be decoded" in r.output
    assert out.read_bytes() == b"previous"
    assert _files(out_dir) == ["m.int8.onnx"]


def test_bias_correction_removes_the_systematic_shift(fp32_onnx, texture_data, tmp_path):
    """Without the head-input bias correction INT8 shifts every normal score one way; with it the
    median shift must shrink (same calibration images, every convolution INT8)."""
    from edgeano.calibration.quantize import calibrate_onnx
    from edgeano.calibration.reader import calibration_paths, load_frames
    from edgeano.runtime.engine import Engine

    frames = load_frames(calibration_paths(texture_data, NUM))
    with Engine.load(fp32_onnx) as ref:
        base = ref.score(frames).scores
    shift = {}
    for corrected in (False, True):
        out = tmp_path / f"bias_{corrected}.onnx"
        rep = calibrate_onnx(fp32_onnx, out, texture_data, num=NUM, float_stride=0, bias_correction=corrected,
                             progress=False, verbose=False)
        assert bool(rep["bias_correction"]) == corrected
        with Engine.load(out) as eng:
            shift[corrected] = abs(float(np.median(eng.score(frames).scores - base)))
    assert shift[True] < 0.7 * shift[False], shift  # measured 0.074 vs 0.135; the rest is random error (distances only grow)


def test_calibrate_needs_no_torch(fp32_onnx, texture_data, tmp_path):
    """Calibration is ONNX Runtime only, so it also runs where torch is not installed (a device)."""
    import subprocess
    import sys

    out = tmp_path / "nt.onnx"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeano.cli.main import main\n"
            f"sys.argv = ['edgeano', 'calibrate', {str(fp32_onnx)!r}, '--data', {str(texture_data)!r}, '--num', '4', "
            f"'--float-stride', '0', '--out', {str(out)!r}]\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and read_onnx_metadata(out)["precision"] == "int8"


def test_report_compares_on_onnx_runtime_where_tensorrt_is_present(fp32_onnx, texture_data, monkeypatch):
    """The report's FP32/INT8 figures are ONNX Runtime's even on a box where `auto` would pick
    TensorRT (here: told that TensorRT is ready, which would fail to load without it)."""
    from edgeano.calibration.report import build_report
    from edgeano.data.datasets import good_frames
    from edgeano.runtime import engine

    monkeypatch.setattr(engine, "_tensorrt_ready", lambda: True)
    assert engine.auto_backend(fp32_onnx) == "tensorrt"
    rep = build_report(fp32_onnx, fp32_onnx, good_frames(texture_data, 4), progress=False)
    assert rep["normal"]["n"] == 4 and rep["normal"]["max_abs_diff"] == 0.0
