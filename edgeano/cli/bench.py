"""edgeano bench: engine-only latency and throughput of a checkpoint, ONNX or engine."""

from __future__ import annotations

import click

from edgeano.cli.common import (COUNT, Threads, backend_option, friendly_errors, output_file, precision_option, runner_options,
                                server_option)


@click.command("bench")
@click.option("--model", "model", required=True, help="Checkpoint (.pt: PyTorch eager), .onnx, .engine, or a model name.")
@click.option("--iters", type=COUNT, default=100, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--batch", type=COUNT, default=1, show_default=True)
@click.option("--threads", type=Threads(), default=None, help="CPU threads for ONNX Runtime / OpenVINO / PyTorch (default: library's own).")
@backend_option
@precision_option
@server_option
@click.option("--data", type=click.Path(), default=None, help="Take the input images from here (default: bundled texture photo).")
@click.option("--json", "json_path", type=click.Path(), default=None, callback=output_file(), help="Also write the results as JSON.")
@click.option("--runs", default="runs", show_default=True, type=click.Path())
@friendly_errors
def command(model, iters, warmup, batch, threads, backend, precision, server, data, json_path, runs):
    """Time MODEL: preprocessing and inference, engine only."""
    from edgeano.bench import bench, format_bench
    from edgeano.errors import EdgeanoError
    from edgeano.fileio import write_json
    from edgeano.loaders import open_engine

    if threads and server:
        raise EdgeanoError("--threads tunes a local runner; with --server the server runs the model (edgeano serve --threads)")
    kw = runner_options(backend, precision, threads)
    with open_engine(model, backend=backend, runs=runs, server=server, **kw) as engine:
        res = bench(engine, iters=iters, warmup=warmup, batch=batch, data=data)
    res["threads"] = res.get("threads") or threads
    click.echo(format_bench(res))
    if json_path:
        write_json(json_path, res)
        click.echo(f"wrote {json_path}")
