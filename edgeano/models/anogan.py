"""AnoGAN (Schlegl, Seeböck, Waldstein, Schmidt-Erfurth, Langs, IPMI 2017) and its single-pass
successor f-AnoGAN's izi_f encoder (Schlegl et al., Medical Image Analysis 2019).

A DCGAN (generator G: z -> x, discriminator D) is trained on normal images, so G's outputs span
what normal looks like. An image is scored by how well G can reproduce it:

    AnoGAN (the paper; slow):  search z by Γ gradient steps on
        (1 − λ) · ‖x − G(z)‖₁ + λ · ‖f_D(x) − f_D(G(z))‖₁        λ = 0.1, f_D = D's last conv layer
        score = that loss at the final z, map = |x − G(z)|          (`latent_search`, PyTorch only)
    f-AnoGAN izi_f (the exported graph; one pass): an encoder E, trained after G and D with both
        frozen, maps x to the z that G needs:
        score = mean (x − G(E(x)))² + κ · mean (f_D(x) − f_D(G(E(x))))²      κ = 1
        anomaly_map = mean_c |x − G(E(x))|

The model holds G, D (for f_D; its 1-logit classifier is training-only and not in the exported
graph) and E. Training: edgeano.train.gan_steps.AnoGANStep.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import Decoder, Discriminator, Encoder, weights_init
from edgeano.models.registry import register

SEARCH_STEPS = 500  # Γ in the paper
SEARCH_LAMBDA = 0.1
SEARCH_LR = 0.01  # Adam on z (z ~ N(0, 1), so 500 steps can travel a few units)


@register("anogan")
class AnoGAN(AnomalyModel):
    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64, kappa: float = 1.0):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"AnoGAN needs a square input, got {h}x{w}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        self.nz, self.width, self.kappa = int(nz), int(width), float(kappa)
        self.generator = Decoder(h, c, self.nz, self.width)  # G
        self.discriminator = Discriminator(h, c, self.width)  # D; f_D = discriminator.features
        self.encoder = Encoder(h, c, self.nz, self.width)  # E (izi_f)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "kappa": self.kappa}

    def extra_metadata(self) -> Dict:
        return {"backbone": "dcgan", "latent": self.nz, "kappa": self.kappa,
                "score": "f-AnoGAN izi_f: mean (x - G(E(x)))^2 + kappa * mean (f_D(x) - f_D(G(E(x))))^2"}

    def features(self, xn: torch.Tensor) -> torch.Tensor:
        return self.discriminator.features(xn)

    def izi_f(self, xn: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(score (N,), x̂): the izi_f residual, also the encoder's training loss (its batch mean)."""
        x_hat = self.generator(self.encoder(xn))
        rec = (xn - x_hat).pow(2).flatten(1).mean(1)
        feat = (self.features(xn) - self.features(x_hat)).pow(2).flatten(1).mean(1)
        return rec + self.kappa * feat, x_hat

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        score, x_hat = self.izi_f(xn)
        return {"score": score, "anomaly_map": (xn - x_hat).abs().mean(1)}


def search_loss(model: AnoGAN, xn: torch.Tensor, z: torch.Tensor, lam: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-image AnoGAN loss (1 − λ)·‖x − G(z)‖₁ + λ·‖f_D(x) − f_D(G(z))‖₁ (sums, as in the paper), and G(z)."""
    g = model.generator(z)
    residual = (xn - g).abs().flatten(1).sum(1)
    discrimination = (model.features(xn) - model.features(g)).abs().flatten(1).sum(1)
    return (1 - lam) * residual + lam * discrimination, g


def latent_search(model: AnoGAN, x: torch.Tensor, steps: int = SEARCH_STEPS, lam: float = SEARCH_LAMBDA,
                  lr: float = SEARCH_LR, seed: int = 0) -> Dict[str, torch.Tensor]:
    """The paper's scoring of a [0, 1] batch: Γ Adam steps on z from a seeded N(0, I) draw, every
    image optimised independently (the loss is a sum of per-image terms). Returns score and map."""
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():
        xn = model.normalize(x.clone()).detach()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(x.shape[0], model.nz, 1, 1, generator=gen).to(x.device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss, _ = search_loss(model, xn, z, lam)
                loss.sum().backward()
                opt.step()
            with torch.no_grad():
                loss, g = search_loss(model, xn, z, lam)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
    return {"score": loss.detach(), "anomaly_map": (xn - g).abs().mean(1).detach()}


class LatentSearch(nn.Module):
    """AnoGAN scored the paper's way, with the AnoGAN model's interface (preprocess, output_names,
    forward -> dict), so `edgeano eval --latent-search` runs it through the same Engine and report."""

    def __init__(self, model: AnoGAN, steps: int = SEARCH_STEPS, lam: float = SEARCH_LAMBDA, lr: float = SEARCH_LR):
        super().__init__()
        self.model, self.steps, self.lam, self.lr = model, int(steps), float(lam), float(lr)
        self.preprocess, self.output_names, self.name = model.preprocess, model.output_names, "anogan-latent-search"

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return latent_search(self.model, x, self.steps, self.lam, self.lr)
