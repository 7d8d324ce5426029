"""Real TensorRT engines (`pytest -m tensorrt`): build, run, pad, cache, close; and every engine
precision against PyTorch's golden outputs, the comparison `edgeano verify` makes. Skipped with
the reason where TensorRT or a GPU is missing.

On a device without torch (a Jetson) the golden files come from the workstation:
`scripts/device_check.sh prepare DIR` there, copy DIR, then `EDGEANO_ARTIFACTS=DIR pytest -m tensorrt`
(scripts/device_check.sh run DIR does that). With torch present the artifacts are exported here.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.artifact import sidecar_path
from edgeano.compare import compare, tolerances_for
from edgeano.errors import EdgeanoError
from edgeano.golden import golden_name
from edgeano.runtime.engine import Engine
from edgeano.runtime.tensorrt import read_sidecar, tensorrt_available
from edgeano.runtime.tiny_model import SIZE, tiny_onnx

TRT_OK, TRT_WHY = tensorrt_available()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(not TRT_OK, reason=f"needs TensorRT and a GPU: {TRT_WHY}")]
FRAMES = [np.full((24, 24, 3), v, np.uint8) for v in (10, 60, 110, 160, 210, 250)]
EXPECTED = np.array([10, 60, 110, 160, 210, 250]) / 255  # the tiny model's score: the mean of the image


def ort_outputs(onnx_path, x):
    from edgeano.runtime.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(onnx_path).infer(x)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_infer_matches_onnxruntime(tmp_path, precision):
    from edgeano.runtime.tensorrt import TensorRTRunner
    from edgeano.runtime.trt_build import build_engine

    onnx_path = tiny_onnx(tmp_path / f"m.{precision}.onnx", precision=precision)
    engine = tmp_path / "m.engine"
    side = build_engine(onnx_path, engine, max_batch=4, timing_cache=tmp_path / "timing.cache")  # precision: the ONNX's
    assert engine.is_file() and sidecar_path(engine).is_file() and (tmp_path / "timing.cache").stat().st_size > 0
    assert side["tensorrt"]["max_batch"] == 4 and side["precision"] == precision
    plan = side["tensorrt"]["plan"]
    assert "TF32" in plan["cleared_flags"] and plan["profile"][1][0] == 1 and plan["decisions"]  # opt batch 1
    runner = TensorRTRunner(engine)
    assert (runner.min_batch, runner.max_batch) == (1, 4) and set(runner.output_names) == {"score", "anomaly_map"}
    rng = np.random.default_rng(0)
    for n in (1, 3, 4):  # output shapes follow the batch
        x = rng.random((n, 3, SIZE, SIZE), dtype=np.float32)
        result = compare(runner.infer(x), ort_outputs(onnx_path, x), tolerances_for("tensorrt", precision))
        assert result.passed, result.summary()
    with pytest.raises(EdgeanoError, match="optimisation profile 0 is min .* max \\(4, 3"):
        runner._call(rng.random((5, 3, SIZE, SIZE), dtype=np.float32))  # past infer's own check: TensorRT's answer
    runner.close()
    runner.close()  # twice is fine
    with pytest.raises(EdgeanoError, match="closed"):
        runner.infer(rng.random((1, 3, SIZE, SIZE), dtype=np.float32))
    with Engine.load(engine) as eng:  # the public API: batches larger than max_batch are split
        np.testing.assert_allclose(eng.score(FRAMES).scores, EXPECTED, atol=2e-3)


def test_fixed_batch_engine_pads_partial_batches(tmp_path):
    from edgeano.runtime.trt_build import build_engine

    onnx_path = tiny_onnx(tmp_path / "b2.onnx", batch=2)
    build_engine(onnx_path, tmp_path / "b2.engine", max_batch=2)
    with Engine.load(tmp_path / "b2.engine") as eng:
        assert (eng.min_batch, eng.max_batch) == (2, 2)
        for n in (1, 3):
            res = eng.score(FRAMES[:n])
            assert res.scores.shape == (n,) and res.maps.shape == (n, SIZE, SIZE)
            np.testing.assert_allclose(res.scores, EXPECTED[:n], atol=1e-5)
        assert eng.runner.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))["score"].shape == (1,)  # the runner pads too


def test_corrupt_timing_cache_is_ignored_and_rebuilt(tmp_path, capsys):
    from edgeano.runtime.trt_build import build_engine

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache" * 10)
    build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", timing_cache=cache)
    assert "ignoring timing cache" in capsys.readouterr().err
    assert cache.read_bytes() != b"not a timing cache" * 10 and cache.stat().st_size > 0


def test_close_from_another_thread_keeps_this_threads_context_stack(tmp_path):
    import pycuda.driver as cuda

    from edgeano.runtime.tensorrt import TensorRTRunner
    from edgeano.runtime.trt_build import build_engine

    build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    before = cuda.Context.get_current()
    runner = TensorRTRunner(tmp_path / "m.engine")
    out = []
    worker = threading.Thread(target=lambda: out.append(runner.infer(np.ones((1, 3, SIZE, SIZE), np.float32))))
    worker.start()
    worker.join()
    closer = threading.Thread(target=runner.close)
    closer.start()
    closer.join()
    assert out and out[0]["score"].shape == (1,) and cuda.Context.get_current() == before


def test_engine_cache_builds_once_and_stale_sidecar_is_refused(tmp_path):
    import tensorrt as trt

    from edgeano.runtime.engine_cache import cached_tensorrt_runner
    from edgeano.runtime.tensorrt import TensorRTRunner

    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    r1 = cached_tensorrt_runner(onnx_path, cache_dir=cache)
    engines = list(cache.glob("*.engine"))
    assert len(engines) == 1 and engines[0].name.startswith("m.fp32.")
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


def test_build_cli_writes_engine_and_sidecar(tmp_path):
    from edgeano.cli.main import cli

    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    result = CliRunner().invoke(cli, ["build", str(onnx_path), "--precision", "fp32", "--batch", "2", "--opt-batch", "2"])
    assert result.exit_code == 0, result.output
    side = read_sidecar(tmp_path / "m.fp32.engine")
    assert side["tensorrt"]["max_batch"] == 2 and side["tensorrt"]["plan"]["profile"][1][0] == 2
    assert "next: edgeano verify" in result.output


# -- every engine precision vs PyTorch, through the golden files ---------------------------------------
def golden_onnx(request):
    """ONNX artifacts with a golden file beside: $EDGEANO_ARTIFACTS, else exported here (needs torch)."""
    root = os.environ.get("EDGEANO_ARTIFACTS")
    if root:
        found = sorted(p for p in Path(root).rglob("*.onnx") if p.with_name(golden_name(p)).is_file())
        if not found:
            pytest.skip(f"EDGEANO_ARTIFACTS={root} holds no ONNX with a golden file beside it")
        return found
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("no torch here for the PyTorch reference: set EDGEANO_ARTIFACTS to a folder from "
                    "`scripts/device_check.sh prepare DIR` (run on a workstation)")
    exported = request.getfixturevalue("exported")
    return [exported(m)[p] for m in ("gaussian", "ganomaly") for p in ("fp32", "fp16", "int8")]


def test_engines_match_pytorch_golden(request, tmp_path):
    import tensorrt as trt

    from edgeano.fileio import sha256_file
    from edgeano.golden import verify_artifact
    from edgeano.runtime.tensorrt import check_sidecar, device_info
    from edgeano.runtime.trt_build import build_engine, default_engine_path, inspect_onnx

    failed = []
    for onnx_path in golden_onnx(request):
        beside = default_engine_path(onnx_path, inspect_onnx(onnx_path).precision)
        side = read_sidecar(beside) if beside.is_file() and sidecar_path(beside).is_file() else None
        if side and check_sidecar(side, trt.__version__, device_info(0)) is None \
                and side["tensorrt"]["onnx_sha256"] == sha256_file(onnx_path):
            engine = beside  # built by scripts/device_check.sh for this TensorRT and GPU: reuse it
        else:  # built here, away from its ONNX: verify finds the golden file through the sidecar
            engine = tmp_path / onnx_path.parent.name / beside.name
            engine.parent.mkdir(exist_ok=True)
            side = build_engine(onnx_path, engine)
        result, info = verify_artifact(engine)
        assert info["precision"] == side["precision"]
        print("\n".join([f"{onnx_path} -> {engine} ({info['backend']})"] + result.lines()))
        if not result.passed:
            failed.append(f"{onnx_path}: {result.summary()}")
    assert not failed, "\n".join(failed)
