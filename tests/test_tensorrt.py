"""TensorRT backend. Always run: what needs no GPU (flag validation, precision rules, sidecar and
stale-engine checks, cache keys, calibration data, import hygiene, the trt-api name check).
`-m tensorrt`: real builds and inference, skipped with the reason where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.artifact import make_metadata, set_onnx_metadata, sidecar_path
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.runtime.engine import Engine
from edgeano.runtime.engine_cache import cache_key, cached_engine_path
from edgeano.runtime.tensorrt import check_sidecar, read_sidecar, tensorrt_available
from edgeano.runtime.trt_build import inspect_onnx, make_sidecar, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
TRT_API = next((p for p in (ROOT.parent / "shared" / "tools" / "trt-api", Path("/work/shared/tools/trt-api"))
                if (p / "check.py").is_file()), None)
TRT_OK, TRT_WHY = tensorrt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"needs TensorRT and a GPU: {TRT_WHY}")
SIZE = 16


def tiny_onnx(path: Path, precision: str = "fp32", dynamic: bool = True, threshold: float = 0.5) -> Path:
    """A real edgeano ONNX without torch: score = mean over CHW, anomaly_map = mean over C.
    precision "fp16" types the body FP16 between casts (like an FP16 export with FP32 I/O)."""
    import onnx
    from onnx import TensorProto, helper

    batch = "N" if dynamic else 1
    body_type = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["input"], ["x"], to=body_type),
             helper.make_node("ReduceMean", ["x"], ["s"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
             helper.make_node("Cast", ["s"], ["score"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["m"], ["anomaly_map"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, SIZE, SIZE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = make_metadata("gaussian", Preprocess(size=(SIZE, SIZE)), ["score", "anomaly_map"],
                         {"value": threshold, "method": "test"}, precision=precision)
    set_onnx_metadata(model, meta)
    onnx.save(model, str(path))
    return path


DEVICE = {"name": "Orin", "compute_capability": "8.7"}


def fake_engine(tmp_path: Path, onnx_path: Path, trt_version="10.3.0", device=DEVICE, engine_bytes=b"not-a-plan") -> Path:
    """An engine file + the sidecar build_engine would write for it (the sidecar logic needs no TensorRT)."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(engine_bytes)
    side = make_sidecar(inspect_onnx(onnx_path), "fp16", "fp16-flag", trt_version, device, len(engine_bytes), max_batch=1)
    sidecar_path(engine).write_text(json.dumps(side))
    return engine


def one_line_error(result) -> str:
    """The CLI contract: non-zero exit, exactly one line, no traceback."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


# -- precision rules (per TensorRT version) ---------------------------------------------------------
@pytest.mark.parametrize("requested, onnx_prec, version, calib, expected", [
    (None, "fp32", "8.6.1", None, ("fp32", "fp32")),
    ("fp16", "fp32", "8.6.1", None, ("fp16", "fp16-flag")),
    ("fp16", "fp32", "10.3.0", None, ("fp16", "fp16-flag")),
    ("fp16", "fp32", "11.4.0.106", None, "strongly typed"),
    (None, "fp16", "11.4.0.106", None, ("fp16", "typed")),
    ("fp32", "fp16", "10.3.0", None, "FP16 ONNX"),
    ("int8", "int8", "11.4.0.106", None, ("int8", "typed")),
    (None, "int8", "8.6.1", None, ("int8", "typed")),
    ("fp16", "int8", "10.3.0", None, "QDQ"),
    ("int8", "fp32", "10.3.0", None, "--calib-data"),
    ("int8", "fp32", "10.3.0", "imgs", ("int8", "calibrate")),
    ("int8", "fp32", "8.6.1", "imgs", ("int8", "calibrate")),
    ("int8", "fp32", "11.4.0.106", "imgs", "no on-device calibration"),
    ("int8", "fp16", "10.3.0", None, "QDQ ONNX"),
    ("fp16", "fp32", "10.3.0", "imgs", "--calib-data is for --precision int8"),
])
def test_resolve_precision(requested, onnx_prec, version, calib, expected):
    if isinstance(expected, tuple):
        assert resolve_precision(requested, onnx_prec, version, calib) == expected
    else:
        with pytest.raises(EdgeanoError, match=expected.replace("-", r"\-")):
            resolve_precision(requested, onnx_prec, version, calib)


# -- sidecar and stale engines ----------------------------------------------------------------------
def test_sidecar_matches_and_stale_engine_gives_rebuild_line(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    side = read_sidecar(fake_engine(tmp_path, onnx_path))
    assert side["threshold"]["value"] == 0.5 and side["input"]["size"] == [SIZE, SIZE]  # the artifact's metadata
    assert side["precision"] == "fp16" and len(side["tensorrt"]["onnx_sha256"]) == 64
    assert check_sidecar(side, "10.3.0", DEVICE) is None
    for version, device in (("8.6.1", DEVICE), ("10.3.0", {"name": "Orin", "compute_capability": "7.2"}),
                            ("10.3.0", {"name": "NVIDIA H100", "compute_capability": "8.7"})):
        msg = check_sidecar(side, version, device, tmp_path / "model.engine")
        assert msg and "\n" not in msg
        assert "TensorRT 10.3.0 on Orin (sm 8.7)" in msg and f"TensorRT {version} on {device['name']}" in msg
        assert f"edgeano build {onnx_path} --precision fp16 --out {tmp_path / 'model.engine'}" in msg


@pytest.mark.parametrize("damage, expected", [
    ("missing", "sidecar model.engine.json is missing"),
    ("corrupt", "not valid JSON"),
    ("foreign", "no 'tensorrt' section"),
    ("no_threshold", "lacks threshold"),
    ("other_engine", "belongs to another engine"),
])
def test_engine_load_bad_sidecar_is_one_line(tmp_path, damage, expected):
    engine = fake_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx"))
    side_file = sidecar_path(engine)
    side = json.loads(side_file.read_text())
    if damage == "missing":
        side_file.unlink()
    elif damage == "corrupt":
        side_file.write_text(side_file.read_text()[:40])
    elif damage == "foreign":
        side_file.write_text(json.dumps({k: v for k, v in side.items() if k != "tensorrt"}))
    elif damage == "no_threshold":
        side_file.write_text(json.dumps({k: v for k, v in side.items() if k != "threshold"}))
    else:
        engine.write_bytes(b"a different, longer engine plan")
    with pytest.raises(EdgeanoError, match=expected) as e:
        Engine.load(engine)
    assert "\n" not in str(e.value)


def test_engine_without_tensorrt_is_one_line(tmp_path):
    if TRT_OK:
        pytest.skip("TensorRT is present here")
    with pytest.raises(EdgeanoError, match="needs TensorRT") as e:
        Engine.load(fake_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx")))
    assert "\n" not in str(e.value)


# -- engine cache ---------------------------------------------------------------------------------
def test_cache_key_changes_with_everything_that_binds_an_engine(tmp_path):
    from edgeano.fileio import sha256_file

    a = sha256_file(tiny_onnx(tmp_path / "a.onnx", threshold=0.5))
    b = sha256_file(tiny_onnx(tmp_path / "b.onnx", threshold=0.7))  # same graph, other metadata: another file
    base = cache_key(a, "fp16", "10.3.0", DEVICE, max_batch=1)
    assert base == cache_key(a, "fp16", "10.3.0", dict(DEVICE), max_batch=1)  # deterministic
    variants = [
        cache_key(b, "fp16", "10.3.0", DEVICE, max_batch=1),
        cache_key(a, "int8", "10.3.0", DEVICE, max_batch=1),
        cache_key(a, "fp16", "10.3.1", DEVICE, max_batch=1),
        cache_key(a, "fp16", "10.3.0", {"name": "Orin", "compute_capability": "7.2"}, max_batch=1),
        cache_key(a, "fp16", "10.3.0", {"name": "Xavier", "compute_capability": "8.7"}, max_batch=1),
        cache_key(a, "fp16", "10.3.0", DEVICE, max_batch=8),
        cache_key(a, "fp16", "10.3.0", DEVICE, max_batch=1, dla_core=0),
    ]
    assert len(set(variants + [base])) == len(variants) + 1
    path = cached_engine_path(tmp_path / "a.onnx", "fp16", base, tmp_path / "cache")
    assert path.parent == tmp_path / "cache" and path.name == f"a-fp16-{base}.engine"


def test_cache_dir_default_honours_edgeano_cache(tmp_path, monkeypatch):
    from edgeano.runtime.engine_cache import default_cache_dir

    monkeypatch.setenv("EDGEANO_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "engines"
    monkeypatch.delenv("EDGEANO_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "edgeano" / "engines"


def test_auto_backend_uses_onnxruntime_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEANO_NO_TENSORRT", "1")  # what a machine without TensorRT sees
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with Engine.load(onnx_path) as eng:
        assert eng.name.startswith("onnxruntime")
        res = eng.score([np.full((20, 30, 3), 200, np.uint8)])
    assert res.scores.shape == (1,) and abs(res.scores[0] - 200 / 255) < 1e-5
    with pytest.raises(EdgeanoError, match="backend tensorrt: TensorRT disabled"):
        Engine.load(onnx_path, backend="tensorrt")


# -- edgeano build: flags are checked before TensorRT is needed -----------------------------------------
@pytest.fixture()
def build_cli():
    from edgeano.cli.main import cli

    def run(*args):
        return CliRunner().invoke(cli, ["build", *map(str, args)])

    return run


def test_build_flag_errors_are_one_line(tmp_path, build_cli):
    import onnx
    from onnx import TensorProto, helper

    plain = tiny_onnx(tmp_path / "m.onnx", dynamic=False)
    qdq = tiny_onnx(tmp_path / "m_int8.onnx", precision="int8")  # metadata says QDQ: that is what build trusts
    foreign = tmp_path / "foreign.onnx"
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(foreign))
    (tmp_path / "empty").mkdir()
    cases = [
        ((tmp_path / "nope.onnx",), "not found"),
        ((foreign,), "not an edgeano artifact"),
        ((qdq, "--precision", "fp16"), "QDQ"),
        ((plain, "--precision", "int8"), "--calib-data"),
        ((plain, "--precision", "int8", "--calib-data", tmp_path / "empty"), "no images"),
        ((plain, "--batch", "4"), "fixed batch of 1"),
        ((plain, "--workspace", "0"), "--workspace"),
        ((plain, "--dla", "0"), "DLA runs FP16 or INT8"),
        ((plain, "--out", tmp_path / "m.onnx2"), "--out"),
    ]
    for args, expected in cases:
        line = one_line_error(build_cli(*args))
        assert expected in line, (args, line)
    assert not list(tmp_path.glob("*.engine*"))  # nothing half-written


def test_build_without_tensorrt_prints_the_device_command(tmp_path, build_cli, monkeypatch):
    monkeypatch.setenv("EDGEANO_NO_TENSORRT", "1")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    line = one_line_error(build_cli(onnx_path, "--precision", "fp16", "--batch", "4"))
    assert "cannot build here" in line
    assert f"`edgeano build {onnx_path} --precision fp16 --batch 4 --out {tmp_path / 'm_fp16.engine'}`" in line
    assert not list(tmp_path.glob("*.engine*"))


# -- calibration data (the part of the calibrator that runs without TensorRT) ------------------------
def test_calibration_images_and_batches(texture_data):
    from edgeano.runtime.trt_calibrator import calibration_batches, calibration_images

    paths = calibration_images(texture_data)  # MVTec layout: train/good only
    assert len(paths) == 40 and all(p.parent.name == "good" and p.parent.parent.name == "train" for p in paths)
    few = calibration_images(texture_data, limit=7)
    assert len(few) == 7 and few[0] == paths[0] and few[-1] == paths[-1]
    pre = Preprocess(size=(SIZE, SIZE))
    batches = list(calibration_batches(paths[:10], pre, 4))
    assert [b.shape for b in batches] == [(4, 3, SIZE, SIZE)] * 3  # last one padded to the full batch
    assert batches[0].dtype == np.float32 and 0.0 <= batches[0].min() and batches[0].max() <= 1.0
    np.testing.assert_array_equal(batches[2][2], batches[2][0])  # padding repeats real images


# -- import hygiene and the TensorRT API check -----------------------------------------------------------
def test_tensorrt_modules_import_without_torch_or_onnxruntime():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None\n"
            "import edgeano.runtime.tensorrt, edgeano.runtime.trt_build, edgeano.runtime.trt_calibrator\n"
            "import edgeano.runtime.engine_cache, edgeano.cli.build\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(TRT_API is None, reason="trt-api tool (../shared/tools/trt-api) not found")
def test_trt_api_names_exist_in_every_supported_version():
    out = subprocess.run(["bash", str(ROOT / "tools" / "check_trt_api.sh"), str(TRT_API)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHON=sys.executable))
    assert out.returncode == 0, out.stdout + out.stderr
    for v in ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106"):
        assert f"TensorRT {v}:" in out.stdout and "(all gated: yes)" in out.stdout
    assert "check_trt_api: OK" in out.stdout


# -- on a machine with TensorRT and a GPU (pytest -m tensorrt) -----------------------------------------
def ort_outputs(onnx_path, x):
    from edgeano.runtime.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(onnx_path).infer(x)


@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_build_and_infer_matches_onnxruntime(tmp_path, precision, tol):
    from edgeano.runtime.tensorrt import TensorRTRunner
    from edgeano.runtime.trt_build import build_engine

    onnx_path = tiny_onnx(tmp_path / f"m_{precision}.onnx", precision=precision)
    engine = tmp_path / "m.engine"
    side = build_engine(onnx_path, engine, precision=precision, max_batch=4, timing_cache=tmp_path / "timing.cache")
    assert engine.is_file() and sidecar_path(engine).is_file() and (tmp_path / "timing.cache").stat().st_size > 0
    assert side["tensorrt"]["max_batch"] == 4 and side["precision"] == precision
    runner = TensorRTRunner(engine)
    assert runner.max_batch == 4 and set(runner.output_names) == {"score", "anomaly_map"}
    rng = np.random.default_rng(0)
    for n in (1, 3, 4):  # output shapes follow the batch
        x = rng.random((n, 3, SIZE, SIZE), dtype=np.float32)
        got, ref = runner.infer(x), ort_outputs(onnx_path, x)
        assert got["score"].shape == (n,) and got["anomaly_map"].shape == (n, SIZE, SIZE)
        np.testing.assert_allclose(got["score"], ref["score"], atol=tol)
        np.testing.assert_allclose(got["anomaly_map"], ref["anomaly_map"], atol=tol)
    runner.close()
    with Engine.load(engine) as eng:  # the public API: batches larger than max_batch are split
        res = eng.score([np.full((24, 24, 3), v, np.uint8) for v in (10, 60, 110, 160, 210, 250)])
    np.testing.assert_allclose(res.scores, np.array([10, 60, 110, 160, 210, 250]) / 255, atol=tol)


@pytest.mark.tensorrt
@needs_trt
def test_engine_cache_builds_once_and_stale_sidecar_is_refused(tmp_path):
    import tensorrt as trt

    from edgeano.runtime.engine_cache import cached_tensorrt_runner
    from edgeano.runtime.tensorrt import TensorRTRunner

    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    r1 = cached_tensorrt_runner(onnx_path, cache_dir=cache)
    engines = list(cache.glob("*.engine"))
    assert len(engines) == 1
    mtime = engines[0].stat().st_mtime_ns
    r1.close()
    r2 = cached_tensorrt_runner(onnx_path, cache_dir=cache)
    assert engines[0].stat().st_mtime_ns == mtime and r2.path == engines[0]
    r2.close()
    side = json.loads(sidecar_path(engines[0]).read_text())
    side["tensorrt"]["version"] = "7.0.0"
    sidecar_path(engines[0]).write_text(json.dumps(side))
    with pytest.raises(EdgeanoError, match=f"TensorRT 7.0.0 .* this is TensorRT {trt.__version__}.*edgeano build"):
        TensorRTRunner(engines[0])


@pytest.mark.tensorrt
@needs_trt
def test_build_cli_writes_engine_and_sidecar(tmp_path, build_cli):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    result = build_cli(onnx_path, "--precision", "fp32", "--batch", "2", "--out", tmp_path / "m.engine")
    assert result.exit_code == 0, result.output
    side = read_sidecar(tmp_path / "m.engine")
    assert side["tensorrt"]["max_batch"] == 2 and "next: edgeano" in result.output
