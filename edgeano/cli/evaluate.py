"""edgeano eval: image AUROC, F1-max, per-class AUROC of a checkpoint, ONNX or engine."""

from __future__ import annotations

from pathlib import Path

import click

from edgeano.cli.common import backend_option, friendly_errors, server_option


@click.command("eval")
@click.option("--model", "model", required=True, help="Checkpoint (.pt), .onnx, .engine, or a model name (newest runs/<name>/*/weights/best.pt).")
@click.option("--data", required=True, type=click.Path(), help="MVTec AD layout folder with test/good and test/<defect>.")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Also write the metrics as JSON here.")
@click.option("--plots", "plots", type=click.Path(), default=None, help="Folder for the ROC curve and score histogram PNGs.")
@backend_option
@server_option
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--runs", default="runs", show_default=True, type=click.Path(), help="Runs folder for model names.")
@friendly_errors
def command(model, data, json_path, plots, backend, server, batch, runs):
    """Evaluate MODEL on the test images of --data."""
    from edgeano.data.datasets import load_dataset
    from edgeano.evaluation.loop import evaluate, format_report, public, write_plots
    from edgeano.fileio import write_json
    from edgeano.loaders import open_engine

    ds = load_dataset(data, need_test=True)
    with open_engine(model, backend=backend, runs=runs, server=server) as engine:
        res = evaluate(engine, ds, batch=batch)
    click.echo(format_report(res))
    if json_path:
        write_json(json_path, public(res))
        click.echo(f"wrote {json_path}")
    if plots:
        for p in write_plots(res, Path(plots)):
            click.echo(f"wrote {p}")
