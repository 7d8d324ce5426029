"""edgeano demo: the whole train -> eval -> export -> ONNX Runtime slice, offline, on bundled data."""

from __future__ import annotations

import click

from edgeano.cli.common import friendly_errors


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(), help="Where data, runs and pictures go.")
@click.option("--img-size", type=int, default=224, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def command(out, img_size, seed):
    """Run the whole slice on a small bundled data set (no downloads) and print a summary."""
    from edgeano.demo import run_demo

    run_demo(out, img_size, seed)
