"""The runtime never imports torch: prove it in subprocesses where `import torch` fails."""

from __future__ import annotations

import subprocess
import sys

BLOCK = "import sys; sys.modules['torch'] = None; "


def _run(code: str):
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_without_torch():
    r = _run("import edgeano.runtime, edgeano.loaders, edgeano.evaluation.loop, edgeano.bench, edgeano.artifact; print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_cli_help_without_torch():
    for args in ([], ["run"], ["bench"], ["eval"], ["build"], ["calibrate"]):
        r = _run(f"sys.argv = ['edgeano'] + {args!r} + ['--help']; from edgeano.cli.main import main; main()")
        if args and f"No such command '{args[0]}'" in r.stderr:
            continue  # that command is not part of this build yet
        assert r.returncode == 0, (args, r.stderr)
        assert "Usage:" in r.stdout


def test_checkpoint_without_torch_says_what_to_install(tmp_path, texture_data):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"\x80\x02}q\x00.")
    r = _run(f"sys.argv = ['edgeano', 'eval', '--model', {str(ckpt)!r}, '--data', {str(texture_data)!r}]; from edgeano.cli.main import main; main()")
    assert r.returncode == 2  # a missing package is configuration (edgeano.errors.EXIT_USAGE)
    assert "needs torch" in r.stderr and "edgeano[train]" in r.stderr
    assert "Traceback" not in r.stderr


def test_bench_and_eval_on_onnx_without_torch(gaussian_onnx, texture_data):
    """The device path end to end: bench (with --data images) and eval of an ONNX, torch blocked."""
    for args in (["bench", "--model", str(gaussian_onnx), "--iters", "2", "--warmup", "1", "--data", str(texture_data)],
                 ["eval", "--model", str(gaussian_onnx), "--data", str(texture_data)]):
        r = _run(f"sys.argv = ['edgeano'] + {args!r}; from edgeano.cli.main import main; main()")
        assert r.returncode == 0, (args, r.stderr)
