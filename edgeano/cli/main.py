"""`edgeano` entry point. Commands live one per module; importing them must not import torch."""

from __future__ import annotations

import importlib

import click

from edgeano import __version__
from edgeano.cli.common import OneLineGroup

# Order here is the order in `edgeano --help`.
COMMAND_MODULES = ("train", "evaluate", "export", "calibrate", "build", "verify", "run", "serve", "bench", "doctor", "demo")


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeano")
def cli():
    """Visual anomaly detection from PyTorch to a camera on an NVIDIA Jetson.

    \b
    train -> eval -> export [--fp16|--int8] -> build (on the device) -> run --camera 0
    """


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"edgeano.cli.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"edgeano.cli.{_name}":
            raise
        continue
    cli.add_command(_mod.command)


def main():
    cli(prog_name="edgeano")


if __name__ == "__main__":
    main()
