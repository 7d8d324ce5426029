"""edgeano train: fit/train a model on good images; writes runs/<model>/<name>/."""

from __future__ import annotations

import click

from edgeano.cli.common import friendly_errors

MODELS = ("gaussian", "ganomaly", "skip-ganomaly")


@click.command("train")
@click.option("--model", "model", required=True, type=click.Choice(MODELS), help="Model to train.")
@click.option("--data", required=True, type=click.Path(), help="MVTec AD folder (train/good, test/...) or a folder of good images.")
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              type=click.Choice(["efficientnet-lite0", "efficientnet-b0"]), help="Gaussian model: feature extractor.")
@click.option("--weights", type=click.Path(), default=None, help="Backbone ImageNet weights (.pth); B0 needs a torchvision or lukemelas file.")
@click.option("--img-size", type=int, default=None, help="Input size (square). Default: 224 gaussian, 128 GANomaly.")
@click.option("--epochs", type=int, default=None, help="GANomaly family: epochs.")
@click.option("--batch", type=int, default=None, help="Batch size.")
@click.option("--lr", type=float, default=None, help="GANomaly family: Adam learning rate (default 2e-4).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--resume", is_flag=True, help="GANomaly family: continue the named run from last.pt.")
@click.option("--out", default="runs", show_default=True, type=click.Path(), help="Runs folder.")
@click.option("--name", default=None, help="Run name (default: exp, exp2, ...).")
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def command(model, **opts):
    """Train MODEL on the good images in --data."""
    from edgeano.train import run_training

    run_training(model, **opts)
