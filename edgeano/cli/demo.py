"""edgeano demo: the whole train -> eval -> export -> ONNX Runtime slice, offline, on bundled data."""

from __future__ import annotations

from typing import Dict

import click

from edgeano.cli.common import friendly_errors, output_dir


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(), callback=output_dir, help="Where data, runs and pictures go.")
@click.option("--img-size", type=click.IntRange(32, 1024), default=224, show_default=True, help="Training size (square) of the Gaussian model.")
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def command(out, img_size, seed):
    """Run the whole slice on a small bundled data set (no downloads) and print a summary."""
    from edgeano.demo import run_demo

    print_summary(run_demo(out, img_size, seed))


def print_summary(s: Dict) -> None:
    pt, ox = s["pytorch"], s["onnxruntime"]
    click.echo("")
    click.echo("demo summary")
    click.echo(f"  test set        {ox['n_normal']} good, {ox['n_anomalous']} defective ({', '.join(ox['per_class'])})")
    click.echo(f"  image AUROC     PyTorch {pt['image_auroc']:.4f}   ONNX Runtime {ox['image_auroc']:.4f}")
    click.echo(f"  F1-max          PyTorch {pt['f1_max']:.4f}   ONNX Runtime {ox['f1_max']:.4f}")
    click.echo(f"  threshold       {ox['threshold']:.5g} -> FPR {ox['fpr_at_threshold']:.3f}, TPR {ox['tpr_at_threshold']:.3f}")
    click.echo(f"  latency (b=1)   PyTorch {s['latency_ms']['pytorch']:.1f} ms   ONNX Runtime {s['latency_ms']['onnxruntime']:.1f} ms")
    click.echo(f"  artifacts       {s['checkpoint']}\n                  {s['onnx']}")
    click.echo(f"  pictures        {', '.join(s['plots'])}")
    click.echo(f"  took            {s['seconds']} s")
    click.echo(f"next: edgeano run --model {s['onnx']} --source {s['data']}/test/spot --headless --events events.jsonl")
