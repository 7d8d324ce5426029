"""Convolutional autoencoder (Bergmann, Löwe, Fauser, Sattlegger, Steger: "Improving Unsupervised
Defect Segmentation by Applying Structural Similarity to Autoencoders", VISAPP 2019), inference graph.

    x ──encoder──► z (nz, 1x1) ──decoder──► x̂
    loss "l2":    anomaly_map = mean_c (x − x̂)²                 score = mean of the map
    loss "ssim":  anomaly_map = 1 − SSIM(x, x̂) per pixel (Gaussian window, σ = 1.5)

Trained on normal images only, the bottleneck learns to reproduce them; a defect is not in what it
can reproduce, so it stays in the residual. The paper's point is the second row: the per-pixel L2
residual fires on every slightly misplaced edge, SSIM compares local luminance, contrast and
structure and fires on what is structurally new. Encoder and decoder are the DCGAN stacks of
`edgeano.models.dcgan` (strided 4x4 convs to 4x4, then a 4x4 conv to the 1x1 latent).

`ReconstructionModel` is the part the VAE, the Residual VAE and OE-SDN share: the map and score
from an image and its reconstruction.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import Decoder, Encoder, weights_init
from edgeano.models.registry import register

RECON_LOSSES = ("l2", "ssim")
SSIM_SIGMA = 1.5  # the standard SSIM window (Wang et al. 2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 2.0  # images are in [-1, 1] after Normalize (mean = std = 0.5)


def ssim_window(img_size: int) -> int:
    """Odd SSIM window side: 11 (the paper's, at 128 px) scaled with the input, at least 5."""
    return max(5, int(round(11 * img_size / 128)) | 1)


class SSIM(nn.Module):
    """Per-pixel SSIM of two (N, C, H, W) images, averaged over channels -> (N, H, W). Local means,
    variances and covariance are one depthwise Gaussian conv each (zero padding keeps the size)."""

    def __init__(self, channels: int, window: int):
        super().__init__()
        ax = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
        g = torch.exp(-(ax ** 2) / (2 * SSIM_SIGMA ** 2))
        k = torch.outer(g, g) / g.sum() ** 2
        self.register_buffer("kernel", k.expand(channels, 1, window, window).contiguous())
        self.channels, self.pad = channels, window // 2
        self.c1, self.c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.pad, groups=self.channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu_a, mu_b = self._blur(a), self._blur(b)
        var_a = self._blur(a * a) - mu_a * mu_a
        var_b = self._blur(b * b) - mu_b * mu_b
        cov = self._blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + self.c1) * (2 * cov + self.c2)) / ((mu_a ** 2 + mu_b ** 2 + self.c1) * (var_a + var_b + self.c2))
        return s.mean(1)


class Autoencoder(nn.Module):
    """The DCGAN encoder and decoder back to back: (N, C, S, S) in [-1, 1] -> same."""

    def __init__(self, img_size: int, channels: int, nz: int, width: int):
        super().__init__()
        self.encoder = Encoder(img_size, channels, nz, width)
        self.decoder = Decoder(img_size, channels, nz, width)

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(xn))


class ReconstructionModel(AnomalyModel):
    """x -> reconstruction -> residual map (L2 or 1 − SSIM) -> score = mean of the map.
    Subclasses build `reconstruct(xn)`; the loss a trainer minimises is `residual_map` too."""

    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, loss: str = "l2"):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"{type(self).__name__} needs a square input, got {h}x{w}")
        if loss not in RECON_LOSSES:
            raise ValueError(f"loss must be one of {RECON_LOSSES}, got {loss!r}")
        self.loss = loss
        self.ssim = SSIM(c, ssim_window(h)) if loss == "ssim" else None

    def reconstruct(self, xn: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def residual_map(self, xn: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """(N, H, W): mean_c (x − x̂)², or 1 − SSIM(x, x̂)."""
        if self.ssim is not None:
            return 1.0 - self.ssim(xn, x_hat)
        return (xn - x_hat).pow(2).mean(1)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        amap = self.residual_map(xn, self.reconstruct(xn))
        return {"score": amap.flatten(1).mean(1), "anomaly_map": amap}


@register("ae")
class ConvAE(ReconstructionModel):
    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64, loss: str = "l2"):
        super().__init__(preprocess, loss)
        c, h, _ = preprocess.input_shape
        self.nz, self.width = int(nz), int(width)
        self.net = Autoencoder(h, c, self.nz, self.width)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "loss": self.loss}

    def extra_metadata(self) -> Dict:
        what = "mean_c (x - x_hat)^2" if self.loss == "l2" else "1 - SSIM(x, x_hat)"
        return {"backbone": "dcgan-ae", "latent": self.nz, "loss": self.loss,
                "score": f"mean over pixels of the map; map = {what}"}

    def reconstruct(self, xn: torch.Tensor) -> torch.Tensor:
        return self.net(xn)
