"""What every command shares: one-line errors instead of tracebacks or usage blocks, the exit
codes of edgeano.errors, option types that refuse what would silently misbehave (NaN, 0 threads),
output paths checked while the flags are parsed, the library's log on the console, the "next:" hint."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import sys
import threading

import click

from edgeano.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, EdgeanoError

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


# -- errors ---------------------------------------------------------------------------------------
class OneLineGroup(click.Group):
    """A usage error (bad value, unknown option, missing flag) as one `error:` line and exit 2,
    like every other error, instead of click's usage block; EdgeanoErrors raised while parsing
    (an output path's check) as their own line and code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else ctx.command_path
            click.echo(f"error: {e.format_message()} (see `{where} --help`)", err=True)
            ctx.exit(EXIT_USAGE)
        except EdgeanoError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception: the same clean-up paths as Ctrl-C (temp files, last.pt) run."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def friendly_errors(fn):
    """EdgeanoError -> `error: ...` and its exit code; Ctrl-C -> 130, SIGTERM -> 143 (after the
    same clean-up); anything else -> one line, exit 1 (set EDGEANO_DEBUG=1 for the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        console_logging()
        try:
            with sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except EdgeanoError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            term = isinstance(e, Terminated)
            click.echo("terminated (SIGTERM)" if term else "interrupted", err=True)
            sys.exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for users
            if os.environ.get("EDGEANO_DEBUG"):
                raise
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            click.echo(f"error: {type(e).__name__}: {msg} (set EDGEANO_DEBUG=1 for the traceback)", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


# -- console --------------------------------------------------------------------------------------
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
    """Show the library's progress and results (loggers under "edgeano") on the console, once;
    keep OpenCV's and libav's own warnings (a truncated PNG, "moov atom not found") off stderr:
    the library counts unreadable images and says so in its own words."""
    log = logging.getLogger("edgeano")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
    log.setLevel(logging.INFO)
    log.propagate = False
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when the FFmpeg backend starts
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2 = sys.modules.get("cv2")  # already imported: its log level is set, the variable above is read at import only
    if cv2 is not None and hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def next_step(cmd: str) -> None:
    click.echo(f"next: {cmd}")


# -- option types ---------------------------------------------------------------------------------
class Number(click.ParamType):
    """A finite float (click.FLOAT takes "nan" and "inf", and NaN passes every range check),
    optionally > or >= a minimum."""

    name = "number"

    def __init__(self, minimum=None, open_min=False):
        self.minimum, self.open_min = minimum, open_min

    def convert(self, value, param, ctx):
        v = value if isinstance(value, float) else click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and (v <= self.minimum if self.open_min else v < self.minimum):
            self.fail(f"{v:g} must be {'>' if self.open_min else '>='} {self.minimum:g}", param, ctx)
        return v


FINITE = Number()
POSITIVE = Number(0, open_min=True)
COUNT = click.IntRange(min=1)  # images, iterations, batch sizes, widths: 0 never means "the default"


class Threads(click.ParamType):
    """CPU threads: 1..the CPUs this process may use (100000 spun and grew past 1.2 GB)."""

    name = "threads"

    def convert(self, value, param, ctx):
        n = value if isinstance(value, int) else click.INT.convert(value, param, ctx)
        cpus = available_cpus()
        if not 1 <= n <= cpus:
            self.fail(f"{n} is not in 1..{cpus} (the CPUs this process may use)", param, ctx)
        return n


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def output_file(*suffixes: str):
    """Option callback: the value is a writable file path (checked while parsing, before any work)."""

    def check(ctx, param, value):
        if value is not None:
            from edgeano.fileio import check_output_file

            check_output_file(value, param.opts[0], suffixes or None)
        return value

    return check


def output_dir(ctx, param, value):
    """Option callback: the value is a folder this process can write in."""
    if value is not None:
        from edgeano.fileio import check_output_dir

        check_output_dir(value, param.opts[0])
    return value
