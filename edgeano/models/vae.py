"""Variational autoencoder (Kingma & Welling, ICLR 2014) as an anomaly detector (An & Cho 2015;
the convolutional form as in Baur et al.'s comparison of autoencoders for anomaly segmentation,
2021), inference graph.

    x ──encoder──► (μ, log σ²) ──(train: z = μ + σ·ε; export: z = μ)──► decoder ──► x̂
    training loss = Σ_pixels residual + β · KL(N(μ, σ²) ‖ N(0, I))
    anomaly_map   = mean_c (x − x̂)²  (or 1 − SSIM)      score = mean of the map (+ KL / pixels, optional)

The KL term pulls every normal image's code towards one smooth prior, so the decoder can only
produce what is typical of the training images; a defect has no code that reproduces it. At
inference the code is the posterior mean: one deterministic pass, no sampling in the graph.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.models.ae import ReconstructionModel
from edgeano.models.dcgan import Decoder, Encoder, weights_init
from edgeano.models.registry import register

LOGVAR_CLAMP = (-10.0, 10.0)  # keeps exp(log σ²) finite early in training


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per image, summed over latent units -> (N,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)


class VariationalModel(ReconstructionModel):
    """What VAE and Residual VAE share: an encoder to 2·nz channels (μ and log σ²), a decoder, KL."""

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, preprocess: Preprocess, nz: int, loss: str, beta: float, score_kl: bool):
        super().__init__(preprocess, loss)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.nz, self.beta, self.score_kl = int(nz), float(beta), bool(score_kl)

    def encode(self, xn: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(xn)
        mu, logvar = h[:, : self.nz], h[:, self.nz:]
        return mu, logvar.clamp(*LOGVAR_CLAMP)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """The reparameterisation trick: z = μ + σ·ε, differentiable in μ and σ."""
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def reconstruct(self, xn: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(xn)[0])

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        mu, logvar = self.encode(xn)
        amap = self.residual_map(xn, self.decoder(mu))
        score = amap.flatten(1).mean(1)
        if self.score_kl:
            score = score + kl_divergence(mu, logvar) / amap[0].numel()
        return {"score": score, "anomaly_map": amap}

    def _score_text(self) -> str:
        what = "mean_c (x - x_hat)^2" if self.loss == "l2" else "1 - SSIM(x, x_hat)"
        return f"mean over pixels of the map{' + KL/pixels' if self.score_kl else ''}; map = {what}, x_hat = decoder(mu)"


@register("vae")
class VAE(VariationalModel):
    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64, loss: str = "l2", beta: float = 1.0,
                 score_kl: bool = False):
        super().__init__(preprocess, nz, loss, beta, score_kl)
        c, h, _ = preprocess.input_shape
        self.width = int(width)
        self.encoder = Encoder(h, c, 2 * self.nz, self.width)  # μ and log σ² as channels of one head
        self.decoder = Decoder(h, c, self.nz, self.width)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "loss": self.loss, "beta": self.beta, "score_kl": self.score_kl}

    def extra_metadata(self) -> Dict:
        return {"backbone": "dcgan-vae", "latent": self.nz, "loss": self.loss, "beta": self.beta, "score": self._score_text()}
