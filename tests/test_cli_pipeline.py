"""train -> eval -> export -> eval -> bench through the CLI, as a user runs it."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from conftest import MODEL_CONTRAST
from edgeano.artifact import read_onnx_metadata
from edgeano.cli.main import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def exported(gaussian_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    r = _invoke("export", "--model", gaussian_run, "--out", out, "--no-build")
    assert r.exit_code == 0, r.output
    return out, r.output


def test_export_writes_checked_artifact(exported, gaussian_run):
    path, output = exported
    assert "FP32 vs PyTorch" in output and "score max rel diff" in output
    meta = read_onnx_metadata(path)
    assert meta["model"] == "gaussian" and meta["precision"] == "fp32" and meta["opset"] == 17
    assert meta["threshold"]["value"] > 0 and meta["train_fingerprint"].startswith("sha256:")
    assert meta["score_stats"]["n"] > 0


def test_eval_same_on_pytorch_and_onnxruntime(exported, gaussian_run, texture_data, tmp_path):
    onnx_path, _ = exported
    reports = {}
    for name, model in (("pt", gaussian_run), ("onnx", onnx_path)):
        js = tmp_path / f"{name}.json"
        r = _invoke("eval", "--model", model, "--data", texture_data, "--json", js, "--plots", tmp_path / name)
        assert r.exit_code == 0, r.output
        assert "image AUROC" in r.output
        reports[name] = json.loads(js.read_text())
        assert (tmp_path / name / "eval_roc.png").stat().st_size > 1000
        assert (tmp_path / name / "eval_scores.png").stat().st_size > 1000
    pt, ox = reports["pt"], reports["onnx"]
    assert pt["backend"].startswith("pytorch") and ox["backend"].startswith("onnxruntime")
    for key in ("image_auroc", "f1_max", "threshold", "n_normal", "n_anomalous", "per_class"):
        assert key in ox
    assert ox["n_normal"] == 12 and ox["n_anomalous"] == 18
    assert ox["image_auroc"] == pytest.approx(pt["image_auroc"], abs=1e-9)
    assert set(ox["per_class"]) == {"scratch", "spot", "smear"}


def test_bench_json(exported, tmp_path):
    js = tmp_path / "b.json"
    r = _invoke("bench", "--model", exported[0], "--iters", 5, "--warmup", 1, "--threads", 1, "--json", js)
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert res["iters"] == 5 and res["infer_ms"]["mean"] > 0 and res["throughput_ips"] > 0


def test_model_name_resolves_newest_run(gaussian_run, tmp_path):
    runs = tmp_path / "runs"
    dst = runs / "gaussian" / "exp" / "weights"
    dst.mkdir(parents=True)
    shutil.copy(gaussian_run, dst / "best.pt")
    r = _invoke("export", "--model", "gaussian", "--runs", runs)
    assert r.exit_code == 0, r.output
    assert (dst / "best.onnx").exists()
    from edgeano.runtime.tensorrt import tensorrt_available

    if not tensorrt_available()[0]:  # says in one line why not, and how to build on the device
        assert "TensorRT: not building here" in r.output and f"edgeano build {dst / 'best.onnx'}" in r.output


@pytest.mark.parametrize("args, message", [
    (["export", "--model", "ganomaly", "--runs", "nowhere"], "no trained 'ganomaly' model"),
    (["export", "--model", "missing.pt"], "model file not found"),
    (["eval", "--model", "missing.onnx", "--data", "/nonexistent/data"], "data folder not found"),
])
def test_bad_input_is_one_line(args, message):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_export_refuses_before_work(gaussian_run, exported, tmp_path):
    r = CliRunner().invoke(cli, ["export", "--model", str(gaussian_run), "--int8"])
    assert r.exit_code != 0 and "--int8 needs --data" in r.output
    r = CliRunner().invoke(cli, ["export", "--model", str(exported[0])])
    assert r.exit_code != 0 and "needs a PyTorch checkpoint" in r.output
    r = CliRunner().invoke(cli, ["export", "--model", str(gaussian_run), "--out", str(tmp_path / "x.bin")])
    assert r.exit_code != 0 and "--out must end in .onnx" in r.output
    assert not (tmp_path / "x.bin").exists()


def test_truncated_artifacts_are_one_line(exported, gaussian_run, texture_data, tmp_path):
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(exported[0].read_bytes()[:500])
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(gaussian_run.read_bytes()[:500])
    for model in (bad_onnx, bad_pt):
        r = CliRunner().invoke(cli, ["eval", "--model", str(model), "--data", str(texture_data)])
        assert r.exit_code == 2, r.output  # a bad artifact: usage (edgeano.errors)
        assert "error:" in r.output and "Traceback" not in r.output


def test_cli_backend_choices_are_the_engines_backends():
    from edgeano.cli.common import BACKENDS as CLI_BACKENDS
    from edgeano.runtime.engine import BACKENDS

    assert CLI_BACKENDS == BACKENDS


@pytest.mark.parametrize("name", MODEL_CONTRAST)
def test_every_new_model_through_export_eval_verify_bench_and_run(name, model_runs, texture_data, tmp_path):
    """Each of AnoGAN, EGBAD, AE, VAE, Residual VAE, OE-SDN (tiny fixtures) the way a user ships it:
    export FP32 + FP16 + INT8 (each checked against PyTorch), eval the INT8 file, verify the FP32
    file against its golden file, bench the INT8 file, run the FP16 file on a folder with events
    that carry the map's peak and area (every one of these models has a map)."""
    out = tmp_path / f"{name}.onnx"
    r = _invoke("export", "--model", model_runs[name]["best"], "--out", out, "--fp16", "--int8", "--data", texture_data,
                "--num", 16, "--no-build")
    assert r.exit_code == 0, r.output
    assert r.output.count("vs PyTorch on") == 3  # FP32, FP16, INT8 parity lines
    int8 = out.with_suffix(".int8.onnx")
    meta = read_onnx_metadata(int8)
    assert meta["model"] == name and meta["precision"] == "int8" and meta["map"]["threshold"] > meta["map"]["unit"] > 0
    rep = json.loads(_run_json(int8, texture_data, tmp_path / "eval.json"))
    assert rep["n_normal"] == 12 and 0 <= rep["image_auroc"] <= 1
    r = _invoke("verify", out, "--json", tmp_path / "verify.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "verify.json").read_text())
    js = tmp_path / "b.json"
    r = _invoke("bench", "--model", int8, "--iters", 3, "--warmup", 1, "--threads", 1, "--json", js)
    assert r.exit_code == 0, r.output
    assert json.loads(js.read_text())
    good = texture_data / "test" / "good"
    r = _invoke("run", "--model", out.with_suffix(".fp16.onnx"), "--source", good, "--headless", "--events", tmp_path / "ev.jsonl")
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert len(events) == len(list(good.iterdir()))
    assert all("score" in e and e["peak"]["value"] >= 0 and e["area_px"] >= 0 for e in events)


def test_eval_latent_search_scores_anogan_the_papers_way(model_runs, texture_data, tmp_path):
    ckpt = model_runs["anogan"]["best"]
    js = tmp_path / "ls.json"
    r = _invoke("eval", "--model", ckpt, "--data", texture_data, "--latent-search", 3, "--json", js)
    assert r.exit_code == 0, r.output
    rep = json.loads(js.read_text())
    single = json.loads(_run_json(ckpt, texture_data, tmp_path / "single.json"))
    assert rep["n_normal"] == 12 and 0 <= rep["image_auroc"] <= 1 and rep["threshold"] != single["threshold"]
    bad = CliRunner().invoke(cli, ["eval", "--model", model_runs["ae"]["best"], "--data", str(texture_data), "--latent-search", "3"])
    assert bad.exit_code == 2 and "AnoGAN" in bad.output


def _run_json(model, data, js):
    r = _invoke("eval", "--model", model, "--data", data, "--json", js)
    assert r.exit_code == 0, r.output
    return js.read_text()
