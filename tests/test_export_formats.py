"""`edgeano export --format triton` (a model repository whose config parses against Triton's own
schema) and `--format deepstream` (an nvinfer config checked key by key against nvinfer's
documented keys, and its normalisation against edgeano's Preprocess), plus the DeepStream app
importing without DeepStream. Neither server runs here; what they read is checked statically."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeano.artifact import preprocess_of, read_onnx_metadata
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.export.deepstream import CONFIG_NAME, META_NAME, NVINFER_KEYS, check_config, write_deepstream
from edgeano.export.triton import parse_config, write_repository

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "jetson" / "deepstream" / "edgeano_deepstream.py"


def export_cli(args, timeout=600):
    code = f"import sys; sys.argv = ['edgeano', 'export'] + {list(map(str, args))!r}; from edgeano.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(gan_runs, tmp_path_factory):
    """`edgeano export --format triton` and `--format deepstream` of the tiny GANomaly, as a user runs
    them, each on its own copy of the checkpoint (the ONNX goes beside it)."""
    import shutil

    out = tmp_path_factory.mktemp("formats")
    onnx = {}
    for fmt, extra in (("triton", ["--out", out / "repo", "--name", "line1"]), ("deepstream", ["--out", out / "ds", "--max-batch", 4])):
        ckpt = out / fmt / "weights" / "best.pt"
        ckpt.parent.mkdir(parents=True)
        shutil.copy(gan_runs["ganomaly"]["best"], ckpt)
        r = export_cli(["--model", ckpt, "--format", fmt, "--no-build", *extra])
        assert r.returncode == 0, r.stderr
        onnx[fmt] = (ckpt.with_suffix(".onnx"), r.stdout)
    return {"repo": out / "repo", "ds": out / "ds", "onnx": onnx["triton"][0], "ds_onnx": onnx["deepstream"][0],
            "stdout": onnx["triton"][1] + onnx["deepstream"][1]}


def test_triton_repository_parses_against_tritons_schema(exported):
    cfg_path = exported["repo"] / "line1" / "config.pbtxt"
    cfg = parse_config(cfg_path.read_text(), str(cfg_path))  # tritonclient's model_config_pb2
    meta = read_onnx_metadata(exported["onnx"])
    assert cfg.name == "line1" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    (inp,) = cfg.input
    assert inp.name == "input" and list(inp.dims) == [3, 32, 32]  # dims without the batch
    from tritonclient.grpc import model_config_pb2 as pb

    assert inp.data_type == pb.TYPE_FP32
    outs = {o.name: o for o in cfg.output}
    assert set(outs) == set(meta["outputs"]) == {"score", "anomaly_map"}
    assert list(outs["score"].dims) == [1] and list(outs["score"].reshape.shape) == []  # the graph's [batch] score
    assert list(outs["anomaly_map"].dims) == [32, 32]
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert len(cfg.instance_group) == 1 and cfg.instance_group[0].count == 1
    assert json.loads(cfg.parameters["edgeano"].string_value) == meta
    model = exported["repo"] / "line1" / "1" / "model.onnx"
    assert model.read_bytes() == exported["onnx"].read_bytes() and meta["dynamic_batch"] is True
    assert "tritonserver --model-repository" in exported["stdout"]


def test_triton_config_the_client_reads(exported):
    """What `run --server` does with a stock Triton's config: metadata and I/O checked as served."""
    from edgeano.runtime.triton import TritonRunner

    cfg = json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(
        parse_config((exported["repo"] / "line1" / "config.pbtxt").read_text()), preserving_proto_field_name=True))
    runner = TritonRunner.__new__(TritonRunner)
    runner.target = "http://x:8000/v2/models/line1"
    from edgeano.runtime.triton import metadata_of

    runner.meta = metadata_of(cfg, runner.target)
    runner._read_io(cfg)
    assert runner.max_batch == 8 and runner.wire_type == "FP32" and runner.output_names == ["score", "anomaly_map"]


def test_triton_repository_refuses_a_fixed_batch_and_bad_configs(gaussian_onnx, tmp_path):
    with pytest.raises(EdgeanoError, match="--dynamic-batch") as e:
        write_repository(gaussian_onnx, tmp_path / "repo")
    assert e.value.exit_code == EXIT_USAGE and not (tmp_path / "repo").exists()
    with pytest.raises(EdgeanoError, match="not a valid Triton model config"):
        parse_config('name: "m"\nmax_batch_size: "eight"\n')
    with pytest.raises(EdgeanoError, match="not a valid Triton model config"):
        parse_config('name: "m"\nmax_batchsize: 8\n')  # a misspelt field


def test_deepstream_config_uses_documented_keys_and_values(exported):
    text = (exported["ds"] / CONFIG_NAME).read_text()
    meta = json.loads((exported["ds"] / META_NAME).read_text())
    assert meta == read_onnx_metadata(exported["ds_onnx"])
    assert check_config(text, meta) == []
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert set(props) <= set(NVINFER_KEYS)
    assert props["network-type"] == "100" and props["output-tensor-meta"] == "1" and props["batch-size"] == "4"
    assert props["onnx-file"] == "model.onnx" and (exported["ds"] / "model.onnx").read_bytes() == exported["ds_onnx"].read_bytes()
    assert props["model-engine-file"] == "model.onnx_b4_gpu0_fp32.engine" and props["network-mode"] == "0"
    assert props["infer-dims"] == "3;32;32" and props["output-blob-names"] == "score;anomaly_map"


def test_deepstream_normalisation_reproduces_preprocess(exported, texture_data):
    """nvinfer's y = net-scale-factor * (x - offsets[c]), applied to a real frame already at the network
    size in the config's colour order, equals edgeano's Preprocess tensor: the graph does mean/std and
    the contrast step itself (this GANomaly has both), so nvinfer must not."""
    import cv2

    from edgeano.data.images import list_images, read_image

    text = (exported["ds"] / CONFIG_NAME).read_text()
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    pre = preprocess_of(json.loads((exported["ds"] / META_NAME).read_text()))
    assert pre.contrast == "standardize"
    frame = cv2.resize(read_image(list_images(texture_data / "test" / "good")[0]), pre.size[::-1], interpolation=cv2.INTER_AREA)
    order = {"0": cv2.COLOR_BGR2RGB, "1": None}[props["model-color-format"]]
    pixels = (cv2.cvtColor(frame, order) if order is not None else frame).transpose(2, 0, 1).astype(np.float64)
    offsets = np.array([float(o) for o in props["offsets"].split(";")]).reshape(-1, 1, 1)
    y = float(props["net-scale-factor"]) * (pixels - offsets)
    assert np.abs(y - pre.image(frame)).max() < 1e-6


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace("offsets=0;0;0", "offsets=127.5;127.5;127.5"), "normalises mean/std itself"),  # mean folded in twice
    (lambda t: t.replace("net-scale-factor=0.00392156862745098", "net-scale-factor=1.0"), "net-scale-factor"),
    (lambda t: t.replace("infer-dims=3;32;32", "infer-dims=3;64;64"), "infer-dims"),
    (lambda t: t.replace("network-type=100", "network-type=7"), "network-type"),
    (lambda t: t.replace("batch-size=4", "batch-sise=4"), "unknown nvinfer key 'batch-sise'"),
    (lambda t: t.replace("model-color-format=0", "model-color-format=1"), "model-color-format"),
    (lambda t: t.replace("output-blob-names=score;anomaly_map", "output-blob-names=anomaly_map"), "score"),
])
def test_deepstream_check_catches_wrong_configs(exported, edit, problem):
    text = (exported["ds"] / CONFIG_NAME).read_text()
    meta = json.loads((exported["ds"] / META_NAME).read_text())
    wrong = edit(text)
    assert wrong != text
    assert any(problem in p for p in check_config(wrong, meta)), check_config(wrong, meta)


def test_deepstream_refuses_a_batch_the_artifact_cannot_take(gaussian_onnx, tmp_path):
    with pytest.raises(EdgeanoError, match="--dynamic-batch"):
        write_deepstream(gaussian_onnx, tmp_path / "ds", batch=4)
    assert not (tmp_path / "ds").exists()


def test_export_format_flags_fail_before_work(gan_runs, tmp_path):
    ckpt = gan_runs["ganomaly"]["best"]
    (tmp_path / "file").write_text("x")
    for args, msg in ((["--format", "triton", "--out", tmp_path / "file"], "is a folder"),
                      (["--format", "triton", "--name", "a b"], "--name"),
                      (["--format", "deepstream", "--name", "x"], "--format triton"),
                      (["--max-batch", "4"], "--format triton or deepstream")):
        r = export_cli(["--model", ckpt, *args], timeout=120)
        assert r.returncode == EXIT_USAGE and msg in r.stderr and "wrote" not in r.stdout, (args, r.stderr)


def load_app():
    spec = importlib.util.spec_from_file_location("edgeano_deepstream", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_deepstream_app_imports_without_pyds_and_writes_edgeanos_events(tmp_path):
    """The app's events are in the schema `edgeano run --events` writes (the real EventsSink), field for field."""
    import time

    from edgeano.stream.sinks import EventsSink, Scored

    sys.modules["pyds"] = None  # as on any machine without DeepStream's bindings
    try:
        app = load_app()
    finally:
        del sys.modules["pyds"]
    assert app.pyds is None
    sink_path = tmp_path / "sink.jsonl"
    sink = EventsSink(sink_path, run_id="r")
    sink.write(Scored(3, time.time(), np.zeros((4, 4, 3), np.uint8), 2.5, True, 2.0, 7.0, source="rtsp://cam2/s", seq=5), None)
    sink.close()
    ours = json.loads(sink_path.read_text())
    rec = app.event_record("r", "rtsp://cam2/s", 3, ours["timestamp"], 2.5, 2.0, 7.0, seq=5)
    assert rec == ours
    assert app.event_record("r", "x", 0, 0.0, float("nan"), 2.0, 1.0)["score"] is None  # strict JSON
    w = app.EventsWriter(tmp_path / "app.jsonl")
    w.write(rec)
    w.close()
    assert json.loads((tmp_path / "app.jsonl").read_text()) == rec


def test_deepstream_app_pipeline_and_cli(tmp_path):
    app = load_app()
    args = app.parse_args(["--config", "ds/config_infer_edgeano.txt", "--source", str(tmp_path / "a.mp4"), "--source", "rtsp://cam/2"])
    assert args.source == [(tmp_path / "a.mp4").as_uri(), "rtsp://cam/2"]
    desc = app.pipeline_description(args.config, args.source, 1280, 720)
    assert "nvinfer name=infer config-file-path=ds/config_infer_edgeano.txt batch-size=2" in desc
    assert "mux.sink_0" in desc and "mux.sink_1" in desc and "live-source=1" in desc
    r = subprocess.run([sys.executable, str(APP), "--config", "x.txt", "--source", "a.mp4"], capture_output=True, text=True, timeout=60)
    if app.pyds is None:
        assert r.returncode == 2 and "pyds" in r.stderr and "Traceback" not in r.stderr


def test_deepstream_app_parses_as_python_38():
    """JetPack 5's DeepStream 6.x runs Python 3.8."""
    import ast

    ast.parse(APP.read_text(), str(APP), feature_version=(3, 8))
