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
BACKENDS = ("auto", "onnxruntime", "tensorrt")


def backend_option(fn):
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                        help="Runner: auto = TensorRT where it and a GPU are present, else ONNX Runtime.")(fn)


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
