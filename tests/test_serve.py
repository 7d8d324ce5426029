"""`edgeano serve` on a real Triton Inference Server (PyTriton's tritonserver) on loopback, and the
Triton client runner behind `run/eval/bench --server`. One server for the whole session, started
as users start it (`edgeano serve`, a subprocess) in the server's own environment (.venv-serve,
made by scripts/setup.sh: PyTriton pins numpy<2); the clients run here. The server tests skip with
the reason where no such environment exists, and fail instead where EDGEANO_REQUIRE_TRITON is set
(.ci/run sets it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgeano.data.images import list_images, read_image
from edgeano.compare import THROUGH_SERVER, tolerances_for
from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.export.onnx_export import compare_engines
from edgeano.runtime.engine import Engine
from edgeano.runtime.triton import TritonRunner, model_url
from linehelpers import free_ports

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edgeano.cli.main import main; "
ROOT = Path(__file__).resolve().parent.parent
SERVE_PYTHON = os.environ.get("EDGEANO_SERVE_PYTHON") or str(ROOT / ".venv-serve" / "bin" / "python")
NAME = "gan"
START_TIMEOUT_S = 240  # tritonserver + the Python backend stub on a busy 2-core machine


def edgeano_cli(args, timeout=180, python=sys.executable):
    code = BLOCK_TORCH + f"sys.argv = ['edgeano'] + {list(map(str, args))!r}; main()"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout)


def need_server() -> str:
    """The Python that runs `edgeano serve` (with PyTriton), or skip/fail with the reason."""
    if not Path(SERVE_PYTHON).is_file():
        ok, why = False, f"no server environment at {SERVE_PYTHON} (bash scripts/setup.sh makes .venv-serve)"
    else:
        r = subprocess.run([SERVE_PYTHON, "-c", "from edgeano.serve import serve_available as s; ok, why = s(); print(why or 'ok')"],
                           capture_output=True, text=True, timeout=120)
        ok, why = r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout + r.stderr).strip()[-300:]
    if not ok:
        if os.environ.get("EDGEANO_REQUIRE_TRITON"):
            pytest.fail(f"EDGEANO_REQUIRE_TRITON is set but the server cannot start: {why}")
        pytest.skip(why)
    return SERVE_PYTHON


@pytest.fixture(scope="session")
def gan_dynamic_onnx(gan_runs, tmp_path_factory) -> Path:
    """The tiny GANomaly (score + anomaly map, contrast step in the graph) with a dynamic batch."""
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint

    model, ckpt = load_checkpoint(gan_runs["ganomaly"]["best"])
    return export_onnx(model, tmp_path_factory.mktemp("serve") / "gan.onnx", checkpoint_metadata(model, ckpt), dynamic_batch=True)


@pytest.fixture(scope="session")
def server(gan_dynamic_onnx, tmp_path_factory):
    """`edgeano serve` on loopback: {'http': url, 'grpc': url, 'metrics': url, 'onnx': path}."""
    python = need_server()
    http, grpc, metrics = free_ports(3)
    log = tmp_path_factory.mktemp("serve-log") / "serve.err"
    args = ["serve", "--model", gan_dynamic_onnx, "--name", NAME, "--address", "127.0.0.1", "--http-port", http,
            "--grpc-port", grpc, "--metrics-port", metrics, "--threads", 1, "--max-queue-delay-us", 20000]
    code = BLOCK_TORCH + f"sys.argv = ['edgeano'] + {list(map(str, args))!r}; main()"
    with open(log, "w") as err:
        proc = subprocess.Popen([python, "-c", code], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "serving" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"edgeano serve did not start (rc {proc.poll()}): {log.read_text()[-2000:]}")
        time.sleep(0.5)
    yield {"http": f"http://127.0.0.1:{http}", "grpc": f"grpc://127.0.0.1:{grpc}",
           "metrics": f"http://127.0.0.1:{metrics}/metrics", "onnx": gan_dynamic_onnx, "proc": proc, "log": log}
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"edgeano serve did not stop on SIGINT within 60 s: {log.read_text()[-1000:]}")
    assert rc == 0 and "serve: stopped" in log.read_text(), log.read_text()[-2000:]


@pytest.fixture(scope="session")
def test_frames(texture_data):
    return [read_image(p) for p in list_images(texture_data / "test", recursive=True)]


# -- pure parts: no server --------------------------------------------------------------------------
def test_model_url_from_server_and_name():
    assert model_url("http://10.0.0.5:8000", "gan") == "http://10.0.0.5:8000/v2/models/gan"
    assert model_url("localhost:9000", "gan") == "http://localhost:9000/v2/models/gan"
    assert model_url("grpc://box", "gan") == "grpc://box:8001/v2/models/gan"
    for server, name, flag in (("ftp://x:1", "gan", "--server"), ("http://x:8000/v2", "gan", "--server"),
                               ("http://x:8000", "a/b", "--model"), ("http://x:99999", "gan", "--server")):
        with pytest.raises(EdgeanoError, match=flag) as e:
            model_url(server, name)
        assert e.value.exit_code == EXIT_USAGE


def test_uint8_wire_is_bit_exact(gan_dynamic_onnx, test_frames):
    """What the client sends (uint8) and the server scales back gives the graph the same floats."""
    from edgeano.serve import to_network_input

    eng = Engine.load(gan_dynamic_onnx, backend="onnxruntime")
    x = eng.preprocess.batch(test_frames[:6])
    runner = TritonRunner.__new__(TritonRunner)  # only the packing half: no server needed
    runner.target, runner.wire_dtype, runner.scale = "test", np.uint8, np.float32(eng.preprocess.scale)
    wire = runner.pack(x)
    assert wire.dtype == np.uint8 and wire.nbytes * 4 == x.nbytes
    back = to_network_input(wire, np.float32(eng.preprocess.scale))
    assert back.dtype == np.float32 and np.array_equal(back, x)
    with pytest.raises(EdgeanoError, match="8-bit"):
        runner.pack(x * 0.5 + 0.001)


def test_python_lib_fix_puts_this_interpreters_libpython_first():
    import sysconfig

    from edgeano.serve import python_lib_fix

    libdir = sysconfig.get_config_var("LIBDIR")
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED")) and (Path(libdir) / sysconfig.get_config_var("INSTSONAME")).is_file()
    env = {"LD_LIBRARY_PATH": f"/opt/x:{libdir}"}
    added = python_lib_fix(env)
    if not shared:
        assert added is None and env["LD_LIBRARY_PATH"] == f"/opt/x:{libdir}"
        return
    assert added == libdir and env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    assert python_lib_fix(env) is None and env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"


def test_serve_refuses_bad_flags_before_starting(gan_dynamic_onnx):
    python = need_server()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = [(["--http-port", port], f"--http-port {port}"), (["--grpc-port", "8000", "--http-port", "8000"], "must differ"),
                 (["--name", "a/b"], "--name"), (["--max-batch", "0"], "--max-batch")]
        for extra, msg in cases:
            r = edgeano_cli(["serve", "--model", gan_dynamic_onnx, "--address", "127.0.0.1", *extra], timeout=120, python=python)
            assert r.returncode == EXIT_USAGE and msg in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)


def test_help_stays_light():
    """`edgeano --help` and `serve --help` import neither PyTriton nor tritonclient."""
    code = "import sys; sys.modules['pytriton'] = None; sys.modules['tritonclient'] = None; sys.modules['torch'] = None; "
    for args in ([], ["serve"], ["run"]):
        r = subprocess.run([sys.executable, "-c", code + f"sys.argv = ['edgeano'] + {args!r} + ['--help']; "
                            "from edgeano.cli.main import main; main()"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "Usage:" in r.stdout, (args, r.stderr)


# -- through the server ----------------------------------------------------------------------------
def test_served_config_carries_the_artifact(server):
    import tritonclient.http as th

    from edgeano.artifact import read_onnx_metadata

    cfg = th.InferenceServerClient(server["http"].split("//")[1]).get_model_config(NAME)
    assert json.loads(cfg["parameters"]["edgeano"]["string_value"]) == read_onnx_metadata(server["onnx"])
    assert cfg["max_batch_size"] == 8 and cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 20000
    (inp,) = cfg["input"]
    assert inp["data_type"] == "TYPE_UINT8" and [int(d) for d in inp["dims"]] == [3, 32, 32]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_scores_through_the_server_equal_local(server, test_frames, protocol):
    local = Engine.load(server["onnx"], backend="onnxruntime", threads=1)
    remote = Engine.load(f"{server[protocol]}/v2/models/{NAME}")
    assert remote.name.startswith(f"triton-{protocol}") and remote.threshold == local.threshold
    assert tolerances_for(remote.name, remote.meta["precision"])  # a row for the Triton runner exists
    d = compare_engines(local, remote, test_frames, tolerances=THROUGH_SERVER)
    assert d["n"] == len(test_frames) > 8  # more than one server batch
    assert d["comparison"].passed, d["comparison"].summary()
    assert d["score_max_rel"] <= 1e-5 and d["map_max_rel_to_peak"] <= 1e-5, d
    assert np.array_equal(local.score(test_frames).labels, remote.score(test_frames).labels)
    remote.close()


def test_dynamic_batching_shows_in_statistics_and_metrics(server, test_frames):
    target = f"{server['http']}/v2/models/{NAME}"
    probe = TritonRunner(target)
    before = probe.statistics()["model_stats"][0]
    engines = [Engine.load(target) for _ in range(8)]  # eight cameras, one frame per request each
    errors = []

    def camera(eng, frames):
        try:
            for f in frames:
                eng.score([f])
        except Exception as e:  # reported below; a thread's exception would be lost
            errors.append(e)

    threads = [threading.Thread(target=camera, args=(e, test_frames[i::8][:3])) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    after = probe.statistics()["model_stats"][0]
    frames = int(after["inference_count"]) - int(before["inference_count"])
    calls = int(after["execution_count"]) - int(before["execution_count"])
    assert frames == sum(len(test_frames[i::8][:3]) for i in range(8))
    assert calls < frames, f"{frames} single-frame requests ran in {calls} executions: no batching"
    assert max(int(b["batch_size"]) for b in after["batch_stats"]) > 1
    text = urllib.request.urlopen(server["metrics"], timeout=10).read().decode()
    counted = [ln for ln in text.splitlines() if ln.startswith(f'nv_inference_count{{model="{NAME}"')]
    assert counted and float(counted[0].split()[-1]) >= frames
    for e in engines + [probe]:
        e.close()


def test_run_eval_bench_through_the_server(server, texture_data, test_frames, tmp_path):
    """`edgeano run --server` end to end (torch blocked, no artifact named), then eval and bench."""
    events = tmp_path / "events.jsonl"
    folder = texture_data / "test" / "good"
    r = edgeano_cli(["run", "--server", server["grpc"], "--model", NAME, "--source", folder, "--headless", "--events", events])
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in events.read_text().splitlines()]
    local = Engine.load(server["onnx"], backend="onnxruntime").score([read_image(p) for p in list_images(folder)])
    assert len(lines) == len(local)
    assert np.allclose([ln["score"] for ln in lines], local.scores, rtol=0, atol=1e-6)  # events round to 6 decimals
    assert [ln["label"] == "NG" for ln in lines] == local.labels.tolist()
    assert "triton-grpc" in r.stderr

    out = tmp_path / "eval.json"
    r = edgeano_cli(["eval", "--server", server["http"], "--model", NAME, "--data", texture_data, "--json", out])
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "eval_local.json"
    assert edgeano_cli(["eval", "--model", server["onnx"], "--data", texture_data, "--json", ref]).returncode == 0
    got, want = json.loads(out.read_text()), json.loads(ref.read_text())
    assert got["image_auroc"] == pytest.approx(want["image_auroc"], abs=1e-9) and got["backend"].startswith("triton-http")

    r = edgeano_cli(["bench", "--server", server["http"], "--model", NAME, "--iters", 3, "--warmup", 1, "--batch", 4])
    assert r.returncode == 0 and "triton-http" in r.stdout, r.stderr


def test_client_errors_are_one_line(server, tmp_path):
    for args, code, msg in ((["--server", server["http"], "--model", "nope"], EXIT_USAGE, "no ready model 'nope'"),
                            (["--server", "http://127.0.0.1:1", "--model", NAME], 1, "no Triton server answers"),
                            (["--backend", "triton", "--model", NAME], EXIT_USAGE, "--server URL"),
                            (["--server", server["http"], "--model", NAME, "--backend", "onnxruntime"], EXIT_USAGE, "local file")):
        r = edgeano_cli(["bench", *args, "--iters", 1, "--warmup", 0], timeout=120)
        assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr, (args, r.returncode, r.stderr)


def test_serve_without_pytriton_says_what_to_install(gan_dynamic_onnx):
    from edgeano.serve import serve_available

    if serve_available()[0]:
        pytest.skip("PyTriton is installed in this environment")
    r = edgeano_cli(["serve", "--model", gan_dynamic_onnx], timeout=120)
    assert r.returncode == 2 and "edgeano[serve]" in r.stderr and "Traceback" not in r.stderr, r.stderr  # a missing package: configuration, exit 2
