"""Residual VAE: the VAE of `edgeano.models.vae` with identity-mapping residual blocks (He, Zhang,
Ren, Sun: "Identity Mappings in Deep Residual Networks", ECCV 2016) in encoder and decoder,
inference graph.

    block(x) = x + conv3(relu(bn(conv3(relu(bn(x))))))       pre-activation: the identity path is clean
    encoder: conv3 stem, then per scale `blocks` blocks and a strided 4x4 conv, down to 4x4 -> (μ, log σ²)
    decoder: the mirror, with strided 4x4 transposed convs, then conv3 -> tanh

A plain conv stack trained as an autoencoder gets harder to train as it gets deeper; with the
identity path each added block starts as (close to) the identity, so depth (`blocks` per scale)
can grow without the loss getting worse. Deep residual autoencoders are prone to exploding
gradients early in training (the sums of many residual branches), which is why the trainer clips
the gradient norm (`edgeano.train.reconstruction`). Scoring is the VAE's: x̂ = decoder(μ).
"""

from __future__ import annotations

import math
from typing import Dict, List

from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.models.dcgan import check_img_size, weights_init
from edgeano.models.registry import register
from edgeano.models.vae import VariationalModel

MAX_WIDTH_FACTOR = 8  # channels stop doubling at 8x the base width


class PreActBlock(nn.Module):
    """x + F(x), F = BN-ReLU-conv3x3-BN-ReLU-conv3x3 (He et al. 2016, fig. 4e)."""

    def __init__(self, ch: int):
        super().__init__()
        self.branch = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(True), nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
                                    nn.BatchNorm2d(ch), nn.ReLU(True), nn.Conv2d(ch, ch, 3, 1, 1, bias=False))

    def forward(self, x):
        return x + self.branch(x)


def _widths(img_size: int, width: int) -> List[int]:
    """Channels at each scale from img_size down to 4x4."""
    n = int(math.log2(check_img_size(img_size))) - 2
    return [width * min(2 ** i, MAX_WIDTH_FACTOR) for i in range(n + 1)]


def _stage(ch: int, blocks: int) -> List[nn.Module]:
    return [PreActBlock(ch) for _ in range(blocks)]


class ResEncoder(nn.Module):
    """(N, C, S, S) -> (N, out, 1, 1)."""

    def __init__(self, img_size: int, in_ch: int, out: int, width: int, blocks: int):
        super().__init__()
        ws = _widths(img_size, width)
        layers: List[nn.Module] = [nn.Conv2d(in_ch, ws[0], 3, 1, 1, bias=False)]
        for a, b in zip(ws, ws[1:]):
            layers += _stage(a, blocks) + [nn.BatchNorm2d(a), nn.ReLU(True), nn.Conv2d(a, b, 4, 2, 1, bias=False)]
        layers += _stage(ws[-1], blocks) + [nn.BatchNorm2d(ws[-1]), nn.ReLU(True), nn.Conv2d(ws[-1], out, 4, 1, 0)]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class ResDecoder(nn.Module):
    """(N, nz, 1, 1) -> (N, C, S, S) in [-1, 1]."""

    def __init__(self, img_size: int, out_ch: int, nz: int, width: int, blocks: int):
        super().__init__()
        ws = _widths(img_size, width)[::-1]
        layers: List[nn.Module] = [nn.ConvTranspose2d(nz, ws[0], 4, 1, 0, bias=False)]
        for a, b in zip(ws, ws[1:]):
            layers += _stage(a, blocks) + [nn.BatchNorm2d(a), nn.ReLU(True), nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False)]
        layers += _stage(ws[-1], blocks) + [nn.BatchNorm2d(ws[-1]), nn.ReLU(True), nn.Conv2d(ws[-1], out_ch, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z)


@register("rvae")
class ResidualVAE(VariationalModel):
    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 32, blocks: int = 1, loss: str = "l2",
                 beta: float = 1.0, score_kl: bool = False):
        super().__init__(preprocess, nz, loss, beta, score_kl)
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        c, h, _ = preprocess.input_shape
        self.width, self.blocks = int(width), int(blocks)
        self.encoder = ResEncoder(h, c, 2 * self.nz, self.width, self.blocks)
        self.decoder = ResDecoder(h, c, self.nz, self.width, self.blocks)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "blocks": self.blocks, "loss": self.loss, "beta": self.beta,
                "score_kl": self.score_kl}

    def extra_metadata(self) -> Dict:
        return {"backbone": f"preact-resnet-vae ({self.blocks} blocks per scale)", "latent": self.nz, "loss": self.loss,
                "beta": self.beta, "score": self._score_text()}
