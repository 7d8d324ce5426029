"""edgeano eval: image AUROC, F1-max, per-class AUROC, TPR/FPR at the artifact threshold and, with
maps and ground-truth masks, pixel AUROC and AUPRO of a checkpoint, ONNX or engine."""

from __future__ import annotations

from pathlib import Path

import click

from edgeano.cli.common import (COUNT, Threads, backend_option, friendly_errors, output_dir, output_file, precision_option,
                                runner_options, server_option)


@click.command("eval")
@click.option("--model", "model", required=True, help="Checkpoint (.pt), .onnx, .engine, or a model name (newest runs/<name>/*/weights/best.pt).")
@click.option("--data", required=True, type=click.Path(), help="MVTec AD layout folder with test/good and test/<defect>.")
@click.option("--json", "json_path", type=click.Path(), default=None, callback=output_file(), help="Also write the metrics as JSON here.")
@click.option("--plots", "plots", type=click.Path(), default=None, callback=output_dir,
              help="Folder for the ROC curve, score histogram and (models with a map) heatmap-overlay grid PNGs.")
@backend_option
@precision_option
@server_option
@click.option("--threads", type=Threads(), default=None, help="CPU threads for ONNX Runtime / OpenVINO (default: library's own).")
@click.option("--batch", type=COUNT, default=16, show_default=True)
@click.option("--runs", default="runs", show_default=True, type=click.Path(), help="Runs folder for model names.")
@click.option("--latent-search", "search_steps", type=click.IntRange(min=0), default=0, metavar="STEPS",
              help="AnoGAN checkpoints: score with the paper's latent search (STEPS Adam steps on z per image, 500 in "
                   "the paper) instead of the single-pass encoder; PyTorch, about STEPS times slower.")
@friendly_errors
def command(model, data, json_path, plots, backend, precision, server, threads, batch, runs, search_steps):
    """Evaluate MODEL on the test images of --data."""
    from edgeano.data.datasets import load_dataset
    from edgeano.errors import EXIT_USAGE, EdgeanoError
    from edgeano.evaluation.loop import evaluate, format_report, public, write_plots
    from edgeano.fileio import write_json
    from edgeano.loaders import open_engine

    kw = runner_options(backend, precision, threads)
    ds = load_dataset(data, need_test=True)
    if search_steps:
        from edgeano.loaders import is_checkpoint, resolve_model

        path = resolve_model(model, runs)
        if not is_checkpoint(path):
            raise EdgeanoError(f"--latent-search runs in PyTorch and needs the AnoGAN checkpoint (.pt), got {path}", EXIT_USAGE)
        from edgeano.models.runner import latent_search_engine

        engine = latent_search_engine(path, data, search_steps)
    else:
        engine = open_engine(model, backend=backend, runs=runs, server=server, **kw)
    with engine:
        res = evaluate(engine, ds, batch=batch)
        map_meta = engine.meta.get("map")
    click.echo(format_report(res))
    if json_path:
        write_json(json_path, public(res))
        click.echo(f"wrote {json_path}")
    if plots:
        for p in write_plots(res, Path(plots), map_meta=map_meta):
            click.echo(f"wrote {p}")
