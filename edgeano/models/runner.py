"""PyTorch runner with the same `infer(x) -> {name: array}` shape as the runtime backends, so
eval and parity tests treat PyTorch as one more backend."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.runtime.engine import Engine


class TorchRunner:
    def __init__(self, model, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device
        self.output_names = list(model.output_names)
        self.max_batch = 32  # bounds memory on big eval sets
        self.name = f"pytorch-{device}"

    @torch.inference_mode()
    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return {k: out[k].float().cpu().numpy() for k in self.output_names}


def engine_from_checkpoint(path, device: str = "cpu", threshold=None) -> Engine:
    model, ckpt = load_checkpoint(path, device)
    return Engine(TorchRunner(model, device), checkpoint_metadata(model, ckpt), threshold)


def latent_search_engine(path, data, steps: int, device: str = "cpu", holdout_every: int = 10) -> Engine:
    """An AnoGAN checkpoint scored the paper's way (`edgeano eval --latent-search STEPS`): Γ = steps
    Adam steps on z per image, in PyTorch. The artifact's threshold belongs to the single-pass izi_f
    score, so this engine's threshold is set the trainer's way, at 1 % FPR on the held-out good
    images of `data` (every `holdout_every`-th of train/good) scored by the same search."""
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_images
    from edgeano.data.preprocess import split_every
    from edgeano.errors import EXIT_USAGE, EdgeanoError
    from edgeano.evaluation.metrics import threshold_at_fpr
    from edgeano.models.anogan import LatentSearch

    model, ckpt = load_checkpoint(path, device)
    if ckpt["model"] != "anogan":
        raise EdgeanoError(f"--latent-search scores AnoGAN checkpoints; {path} is a {ckpt['model']} checkpoint", EXIT_USAGE)
    if steps < 1:
        raise EdgeanoError(f"--latent-search needs >= 1 step, got {steps}", EXIT_USAGE)
    meta = checkpoint_metadata(model, ckpt, scoring=f"AnoGAN latent search, {steps} Adam steps on z (PyTorch)")
    engine = Engine(TorchRunner(LatentSearch(model, steps), device), meta)
    train = load_dataset(data).train
    held, _, _ = read_images([train[i] for i in split_every(len(train), holdout_every)[1]])
    if not held:
        raise EdgeanoError(f"{data}: no readable train/good images to set the latent-search threshold on")
    scores = np.concatenate([engine.score(held[i:i + 32]).scores for i in range(0, len(held), 32)])
    engine.threshold = threshold_at_fpr(scores, 0.01)
    return engine
