"""What every command shares: one-line errors instead of tracebacks, and the "next:" hint."""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from edgeano.errors import EdgeanoError

# --backend choices; edgeano.runtime.engine.BACKENDS is the source (a literal here keeps `--help`
# from importing numpy and OpenCV; a test pins that the two agree).
BACKENDS = ("auto", "onnxruntime", "tensorrt", "triton", "openvino")
PRECISIONS = ("fp32", "bf16")  # OpenVINO's compute precision (edgeano.runtime.openvino.PRECISIONS)


def backend_option(fn):
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                        help="Runner: auto = TensorRT where it and a GPU are present, else ONNX Runtime; "
                             "triton (or --server) = through a Triton server; openvino needs edgeano[openvino].")(fn)


def server_option(fn):
    return click.option("--server", default=None, metavar="URL",
                        help="Score through a Triton server (http://HOST:8000 or grpc://HOST:8001, e.g. `edgeano serve`); "
                             "--model is then the served model's name and no local file is needed.")(fn)


def precision_option(fn):
    return click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                        help="OpenVINO runner: compute precision, pinned (bf16 where the CPU has AVX512_BF16/AMX: "
                             "faster, scores move slightly). ONNX Runtime and TensorRT run the artifact's precision.")(fn)


def runner_options(backend: str, precision: str = "fp32", threads=None) -> dict:
    """The runner keywords of --backend/--precision/--threads, checked together: --precision bf16
    is an OpenVINO setting, and silently ignoring it elsewhere would report an FP32 figure as bf16."""
    from edgeano.errors import EXIT_USAGE

    if threads is not None and threads < 1:
        raise EdgeanoError(f"--threads must be >= 1, got {threads}", EXIT_USAGE)
    kw = {"threads": threads} if threads else {}
    if precision != "fp32":
        if backend != "openvino":
            raise EdgeanoError(f"--precision {precision} is the OpenVINO runner's compute precision: add --backend openvino "
                               "(ONNX Runtime and TensorRT run the artifact's own precision)", EXIT_USAGE)
    if backend == "openvino":
        kw["precision"] = precision
    return kw


class _EchoHandler(logging.Handler):
    """The library's `logging` records on the console: INFO to stdout as is, warnings to stderr
    as "warning: ...". click.echo at emit time, so the current sys.stdout (a test runner's) is used."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            click.echo(f"warning: {msg}", err=True)
        else:
            click.echo(msg)


def console_logging() -> None:
    """Show the library's progress and results (loggers under "edgeano") on the console, once."""
    log = logging.getLogger("edgeano")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def friendly_errors(fn):
    """EdgeanoError -> `error: ...` and its exit code; Ctrl-C -> 130; anything else -> one line
    (set EDGEANO_DEBUG=1 for the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        console_logging()
        try:
            return fn(*args, **kwargs)
        except EdgeanoError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for users
            if os.environ.get("EDGEANO_DEBUG"):
                raise
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            click.echo(f"error: {type(e).__name__}: {msg} (set EDGEANO_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)

    return wrapper


def next_step(cmd: str) -> None:
    click.echo(f"next: {cmd}")
