"""GANomaly (Akçay, Atapour-Abarghouei, Breckon, ACCV 2018), inference graph.

    x ──G_E──► z ──G_D──► x̂ ──E──► ẑ          score = mean_k (z_k − ẑ_k)²
                                              anomaly_map = mean_c |x − x̂|   (input resolution)

Trained on normal images only, the generator learns to encode and reconstruct them; an
anomalous image maps to a latent its reconstruction does not reproduce. The discriminator is a
training-time module (edgeano.train.adversarial) and is not part of this model or its export.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from edgeano.data.preprocess import Preprocess
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import Decoder, Encoder, check_img_size, weights_init
from edgeano.models.registry import register

GAN_MEAN, GAN_STD = 0.5, 0.5  # [0, 1] -> [-1, 1], the range of the decoder's tanh


def gan_preprocess(img_size: int = 128, channels: int = 3, contrast: str = "none") -> Preprocess:
    """The Preprocess both GANomaly models train with: square, RGB or GRAY, mean = std = 0.5,
    optionally per-image contrast normalisation (contrast="standardize", see Preprocess)."""
    check_img_size(img_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return Preprocess(size=(img_size, img_size), color="GRAY" if channels == 1 else "RGB",
                      mean=(GAN_MEAN,) * channels, std=(GAN_STD,) * channels, interpolation="area", contrast=contrast)


@register("ganomaly")
class GANomaly(AnomalyModel):
    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"GANomaly needs a square input, got {h}x{w}")
        self.nz, self.width = int(nz), int(width)
        self.encoder1 = Encoder(h, c, self.nz, self.width)  # G_E
        self.decoder = Decoder(h, c, self.nz, self.width)  # G_D
        self.encoder2 = Encoder(h, c, self.nz, self.width)  # E: re-encodes the reconstruction
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width}

    def extra_metadata(self) -> Dict:
        return {"backbone": "dcgan", "latent": self.nz, "score": "mean over latent of (z - z_hat)^2"}

    def generate(self, xn: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image -> (x̂, z, ẑ); what training optimises."""
        z = self.encoder1(xn)
        x_hat = self.decoder(z)
        return x_hat, z, self.encoder2(x_hat)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        x_hat, z, z_hat = self.generate(xn)
        score = (z - z_hat).pow(2).flatten(1).mean(1)
        return {"score": score, "anomaly_map": (xn - x_hat).abs().mean(1)}
