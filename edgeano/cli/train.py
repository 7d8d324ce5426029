"""edgeano train: fit/train a model on good images; writes runs/<model>/<name>/."""

from __future__ import annotations

import click

from edgeano.cli.common import COUNT, POSITIVE, friendly_errors, output_dir

MODELS = ("gaussian", "ganomaly", "skip-ganomaly")


@click.command("train")
@click.option("--model", "model", required=True, type=click.Choice(MODELS), help="Model to train.")
@click.option("--data", required=True, type=click.Path(), help="MVTec AD folder (train/good, test/...) or a folder of good images.")
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              type=click.Choice(["efficientnet-lite0", "efficientnet-b0"]), help="Gaussian model: feature extractor.")
@click.option("--weights", type=click.Path(), default=None, help="Backbone ImageNet weights (.pth); B0 needs a torchvision or lukemelas file.")
@click.option("--img-size", type=COUNT, default=None, help="Input size (square). Default: 224 gaussian, 128 GANomaly.")
@click.option("--epochs", type=COUNT, default=None, help="GANomaly family: epochs.")
@click.option("--batch", type=COUNT, default=None, help="Batch size.")
@click.option("--lr", type=POSITIVE, default=None, help="GANomaly family: Adam learning rate (default 2e-4).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="GANomaly family: image channels (default: 1 for gray data, else 3).")
@click.option("--nz", type=COUNT, default=None, help="GANomaly family: latent size (default 100).")
@click.option("--width", type=COUNT, default=None, help="GANomaly family: base conv width (default 64, as in the papers).")
@click.option("--contrast", type=click.Choice(["none", "standardize"]), default=None,
              help="Per-image contrast normalisation inside the graph, for parts under varying exposure (default none).")
@click.option("--map", "map_levels", default=None,
              help="Gaussian model: backbone levels of the anomaly map (default 4,5,6), or 'none' for the score-only Rippel model.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True, help="GANomaly family: continue the named run from last.pt.")
@click.option("--out", default="runs", show_default=True, type=click.Path(), callback=output_dir, help="Runs folder.")
@click.option("--name", default=None, help="Run name (default: exp, exp2, ...).")
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def command(model, **opts):
    """Train MODEL on the good images in --data."""
    from edgeano.errors import EXIT_USAGE, EdgeanoError
    from edgeano.train import run_training

    gan_only = {k: v for k, v in opts.items() if k in ("channels", "nz", "width") and v is not None}
    if model != "gaussian" and opts["map_levels"] is not None:
        raise EdgeanoError(f"--map is a Gaussian-model option; {model} has its own reconstruction map (drop it)", EXIT_USAGE)
    if model == "gaussian" and gan_only:
        raise EdgeanoError(f"--{', --'.join(gan_only)}: GANomaly-family options; the Gaussian model has no such setting")
    if model == "gaussian":
        for k in ("channels", "nz", "width"):
            opts.pop(k)
    else:
        opts.pop("map_levels")
        if opts["channels"] is not None:
            opts["channels"] = int(opts["channels"])
    run_training(model, **opts)
