"""edgeano train: fit/train a model on good images; writes runs/<model>/<name>/."""

from __future__ import annotations

import click

from edgeano.cli.common import COUNT, POSITIVE, Number, friendly_errors, output_dir

# edgeano.train.TRAINERS is the source (a literal keeps `--help` from importing the trainers; a test pins them)
MODELS = ("gaussian", "ganomaly", "skip-ganomaly", "anogan", "egbad", "ae", "vae", "rvae", "oe-sdn")
LOOP_ONLY = ("channels", "nz", "width", "loss", "blocks", "beta")  # settings of the learned models, not of the Gaussian one


@click.command("train")
@click.option("--model", "model", required=True, type=click.Choice(MODELS), help="Model to train.")
@click.option("--data", required=True, type=click.Path(), help="MVTec AD folder (train/good, test/...) or a folder of good images.")
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              type=click.Choice(["efficientnet-lite0", "efficientnet-b0"]), help="Gaussian model: feature extractor.")
@click.option("--weights", type=click.Path(), default=None, help="Backbone ImageNet weights (.pth); B0 needs a torchvision or lukemelas file.")
@click.option("--img-size", type=COUNT, default=None, help="Input size (square). Default: 224 gaussian, 32 the learned models (a CPU budget).")
@click.option("--epochs", type=COUNT, default=None, help="Learned models: epochs (default per model, printed at the start).")
@click.option("--batch", type=COUNT, default=None, help="Batch size.")
@click.option("--lr", type=POSITIVE, default=None, help="Learned models: Adam learning rate (default per model: 2e-4 GANs, 1e-3 autoencoders).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Learned models: image channels (default: 1 for gray data, else 3).")
@click.option("--nz", type=COUNT, default=None, help="Learned models: latent size (default 100).")
@click.option("--width", type=COUNT, default=None, help="Learned models: base conv width (default 64; rvae 32).")
@click.option("--loss", type=click.Choice(["l2", "ssim"]), default=None, help="ae, vae, rvae: reconstruction loss and map (default l2).")
@click.option("--blocks", type=click.IntRange(min=0), default=None, help="rvae: residual blocks per scale (its depth; default 1; 0: none).")
@click.option("--beta", type=Number(0), default=None, help="vae, rvae: weight of the KL term (default 0.1).")
@click.option("--contrast", type=click.Choice(["auto", "none", "standardize"]), default=None,
              help="Per-image contrast normalisation inside the graph, for parts under varying exposure. Default: "
                   "none for gaussian; auto for the learned models (standardize when the good images' exposure varies).")
@click.option("--map", "map_levels", default=None,
              help="Gaussian model: backbone levels of the anomaly map (default 4,5,6), or 'none' for the score-only Rippel model.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True, help="Learned models: continue the named run from last.pt.")
@click.option("--out", default="runs", show_default=True, type=click.Path(), callback=output_dir, help="Runs folder.")
@click.option("--name", default=None, help="Run name (default: exp, exp2, ...).")
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def command(model, **opts):
    """Train MODEL on the good images in --data."""
    from edgeano.errors import EXIT_USAGE, EdgeanoError
    from edgeano.train import run_training

    loop_only = {k: v for k, v in opts.items() if k in LOOP_ONLY and v is not None}
    if model != "gaussian" and opts["map_levels"] is not None:
        raise EdgeanoError(f"--map is a Gaussian-model option; {model} has its own reconstruction map (drop it)", EXIT_USAGE)
    if model == "gaussian" and loop_only:
        raise EdgeanoError(f"--{', --'.join(loop_only)}: options of the learned models; the Gaussian model has no such setting", EXIT_USAGE)
    if model == "gaussian" and opts["contrast"] == "auto":
        raise EdgeanoError("--contrast auto is for the learned models; the Gaussian model takes none or standardize", EXIT_USAGE)
    if model == "gaussian":
        for k in LOOP_ONLY:
            opts.pop(k)
    else:
        opts.pop("map_levels")
        if opts["channels"] is not None:
            opts["channels"] = int(opts["channels"])
    run_training(model, **opts)
