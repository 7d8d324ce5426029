"""TensorRT backend, what needs no GPU: flag validation, precision rules, sidecar and stale-engine
checks, cache keys, the engine naming rule, the external-data check, calibration data and its cache
key, import hygiene, the trt-api name check. The build plan per version: test_trt_plan.py; the I/O
plan: test_io_plan.py; real builds and inference (`-m tensorrt`): test_tensorrt_engines.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.artifact import get_onnx_metadata, set_onnx_metadata, sidecar_path
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.runtime.engine import Engine
from edgeano.runtime.engine_cache import cache_key, cached_engine_path
from edgeano.runtime.tensorrt import check_sidecar, read_sidecar, tensorrt_available
from edgeano.runtime.tiny_model import SIZE
from edgeano.runtime.tiny_model import tiny_onnx as make_tiny_onnx
from edgeano.runtime.trt_build import inspect_onnx, make_sidecar, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
TRT_API = next((p for p in (ROOT.parent / "shared" / "tools" / "trt-api", Path("/work/shared/tools/trt-api"))
                if (p / "check.py").is_file()), None)
TRT_OK, TRT_WHY = tensorrt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"needs TensorRT and a GPU: {TRT_WHY}")


def tiny_onnx(path: Path, precision: str = "fp32", dynamic: bool = True, threshold: float = 0.5, batch: int = 1) -> Path:
    """A real edgeano ONNX without torch (edgeano.runtime.tiny_model): score = mean over CHW,
    anomaly_map = mean over C; precision "fp16" types the body FP16 between casts."""
    return make_tiny_onnx(path, precision, "N" if dynamic else batch, threshold, SIZE)


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
    assert path.parent == tmp_path / "cache" and path.name == f"a.fp16.{base}.engine"


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
    dyn, dyn16 = tiny_onnx(tmp_path / "d.onnx"), tiny_onnx(tmp_path / "d.fp16.onnx", precision="fp16")
    bad_size = tiny_onnx(tmp_path / "bad.onnx")
    m = onnx.load(str(bad_size))
    set_onnx_metadata(m, dict(get_onnx_metadata(m), input=dict(get_onnx_metadata(m)["input"], size=[8, 8])))
    onnx.save(m, str(bad_size))
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
        ((plain, "--opt-batch", "1"), "--opt-batch: "),  # a fixed batch has nothing to tune
        ((dyn, "--batch", "4", "--opt-batch", "5"), "--opt-batch 5: must be between 1 and --batch 4"),
        ((dyn16, "--batch", "4", "--opt-batch", "2", "--dla", "0"), "DLA runs one static shape"),
        ((plain, "--device", "-1"), "--device -1"),
        ((bad_size, "--precision", "fp32"), "metadata input.size[0] (height) is 8"),  # check_io, as every runner
    ]
    for args, expected in cases:
        line = one_line_error(build_cli(*args))
        assert expected in line, (args, line)
    assert not list(tmp_path.glob("*.engine*"))  # nothing half-written


def test_build_without_tensorrt_prints_the_device_command(tmp_path, build_cli, monkeypatch):
    monkeypatch.setenv("EDGEANO_NO_TENSORRT", "1")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    line = one_line_error(build_cli(onnx_path, "--precision", "fp16", "--batch", "4", "--opt-batch", "2", "--tf32"))
    assert "cannot build here" in line
    assert (f"`edgeano build {onnx_path} --precision fp16 --batch 4 --opt-batch 2 --out {tmp_path / 'm.fp16.engine'} "
            "--tf32`") in line
    fp16 = tiny_onnx(tmp_path / "m.fp16.onnx", precision="fp16")  # no --precision: the ONNX's own
    assert f"--precision fp16 --out {tmp_path / 'm.fp16.engine'}`" in one_line_error(build_cli(fp16))
    assert not list(tmp_path.glob("*.engine*"))


@pytest.mark.parametrize("onnx_name, precision, engine_name", [
    ("best.onnx", "fp32", "best.fp32.engine"), ("best.onnx", "fp16", "best.fp16.engine"),
    ("best.fp16.onnx", "fp16", "best.fp16.engine"), ("best.int8.onnx", "int8", "best.int8.engine"),
    ("model_v2.onnx", "int8", "model_v2.int8.engine"),
])
def test_one_engine_naming_rule(tmp_path, onnx_name, precision, engine_name):
    from edgeano.runtime.trt_build import default_engine_path

    assert default_engine_path(tmp_path / onnx_name, precision) == tmp_path / engine_name
    key = cache_key("0" * 64, precision, "10.3.0", DEVICE)
    assert cached_engine_path(tmp_path / onnx_name, precision, key, tmp_path).name == engine_name.replace(".engine", f".{key}.engine")


def test_build_refuses_external_data_outside_the_model_folder(tmp_path, build_cli):
    """TensorRT's parser reads external weights itself: the ONNX loader's location check runs first."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeano.runtime.trt_build import inspect_onnx

    folder = tmp_path / "model"
    folder.mkdir()
    meta = get_onnx_metadata(onnx.load(str(tiny_onnx(tmp_path / "t.onnx"))))
    w = numpy_helper.from_array(np.ones((1,), np.float32), "w")
    g = helper.make_graph([helper.make_node("Mul", ["input", "w"], ["x"]),
                           helper.make_node("ReduceMean", ["x"], ["score"], axes=[1, 2, 3], keepdims=0),
                           helper.make_node("ReduceMean", ["x"], ["anomaly_map"], axes=[1], keepdims=0)], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
                           helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", SIZE, SIZE])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    set_onnx_metadata(model, meta)
    onnx.save(model, str(folder / "ok.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    assert inspect_onnx(folder / "ok.onnx").input_shape == (-1, 3, SIZE, SIZE)  # inside its folder: fine
    (tmp_path / "secret.bin").write_bytes(np.ones(1, np.float32).tobytes())
    evil = onnx.load(str(folder / "ok.onnx"), load_external_data=False)
    for kv in evil.graph.initializer[0].external_data:
        if kv.key == "location":
            kv.value = "../secret.bin"
    onnx.save(evil, str(folder / "evil.onnx"))
    result = build_cli(folder / "evil.onnx", "--precision", "fp32")
    line = one_line_error(result)
    assert result.exit_code == 2 and "external weight data is refused" in line and "outside" in line
    for kv in evil.graph.initializer[0].external_data:
        if kv.key == "location":
            kv.value = "gone.bin"  # inside the folder, but missing: the ONNX loader's own check
    onnx.save(evil, str(folder / "gone.onnx"))
    result = build_cli(folder / "gone.onnx", "--precision", "fp32")
    assert result.exit_code == 2 and "external weight data is refused" in one_line_error(result)


def test_calibration_cache_key_changes_with_what_decides_the_scales(tmp_path, texture_data):
    from edgeano.calibration.reader import calibration_paths
    from edgeano.runtime.trt_calibrator import calibration_cache_key

    paths = calibration_paths(texture_data, 8)
    base = calibration_cache_key("a" * 64, "10.3.0", paths, 8)
    assert base == calibration_cache_key("a" * 64, "10.3.0", list(paths), 8) and len(base) == 16
    copy = tmp_path / paths[0].name
    copy.write_bytes(paths[0].read_bytes() + b"x")  # same name, other bytes
    variants = [calibration_cache_key("b" * 64, "10.3.0", paths, 8), calibration_cache_key("a" * 64, "8.6.1", paths, 8),
                calibration_cache_key("a" * 64, "10.3.0", paths[:-1], 8), calibration_cache_key("a" * 64, "10.3.0", paths, 4),
                calibration_cache_key("a" * 64, "10.3.0", [copy] + paths[1:], 8)]
    assert len(set(variants + [base])) == len(variants) + 1


# -- calibration data (the part of the calibrator that runs without TensorRT) ------------------------
def test_calibration_images_and_batches(texture_data):
    from edgeano.calibration.reader import calibration_paths
    from edgeano.runtime.trt_calibrator import MAX_IMAGES, calibration_batches

    paths = calibration_paths(texture_data, MAX_IMAGES)  # the one picker (ORT and TensorRT): MVTec train/good only
    assert len(paths) == 40 and all(p.parent.name == "good" and p.parent.parent.name == "train" for p in paths)
    few = calibration_paths(texture_data, 7)
    assert len(few) == 7 and few[0] == paths[0] and few[-1] == paths[-1]
    pre = Preprocess(size=(SIZE, SIZE))
    batches = list(calibration_batches(paths[:10], pre, 4))
    assert [b.shape for b in batches] == [(4, 3, SIZE, SIZE)] * 3  # last one padded to the full batch
    assert batches[0].dtype == np.float32 and 0.0 <= batches[0].min() and batches[0].max() <= 1.0
    np.testing.assert_array_equal(batches[2][2], batches[2][0])  # padding repeats real images


@pytest.mark.skipif(TRT_API is None, reason="trt-api tool (../shared/tools/trt-api) not found")
def test_call_checker_sees_methods_on_tensorrt_objects(tmp_path):
    """tools/check_trt_calls.py is not vacuous: a wrong method on a TensorRT object, a method of the
    module passed as `trt`, and a name holding another class than the checker assumes all fail."""
    src = tmp_path / "uses_trt.py"
    src.write_text("def build(trt, logger):\n"
                   "    builder = trt.Builder(logger)\n"
                   "    config = builder.create_network(0)\n"  # a network under the name of a config
                   "    config.set_flagg(trt.BuilderFlag.FP16)\n"
                   "    trt.BuilderFlag.NOPE\n"
                   "    self.context.execute_async_v2(0, 0)\n")
    out = subprocess.run(["bash", str(TRT_API / "trt-python"), "10.3.0", str(ROOT / "tools" / "check_trt_calls.py"), str(src)],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHON=sys.executable))
    assert out.returncode == 1, out.stdout + out.stderr
    for expected in ("MISSING   trt.IBuilderConfig.set_flagg", "MISSING   trt.BuilderFlag.NOPE",
                     "MISSING   trt.IExecutionContext.execute_async_v2", "MISMATCH  config = ...create_network(...) makes "
                     "trt.INetworkDefinition"):
        assert expected in out.stdout, out.stdout


# -- import hygiene and the TensorRT API check -----------------------------------------------------------
def test_device_path_parses_as_python_38():
    """JetPack 5.1 runs Python 3.8 (jetson/README.md): no newer syntax on the device path."""
    import ast

    files = [p for d in ("runtime", "stream", "cli") for p in (ROOT / "edgeano" / d).glob("*.py")]
    files += [p for p in (ROOT / "edgeano" / "evaluation").glob("*.py")]
    files += [ROOT / "edgeano" / f for f in ("artifact.py", "compare.py", "golden.py", "errors.py", "fileio.py", "loaders.py",
                                             "bench.py")]
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 8))


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
    for v in ("8.5.2", "8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106"):
        assert f"TensorRT {v}:" in out.stdout and "(all gated: yes)" in out.stdout
    assert "check_trt_api: OK" in out.stdout
