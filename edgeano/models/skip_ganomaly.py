"""Skip-GANomaly (Akçay, Atapour-Abarghouei, Breckon, IJCNN 2019), inference graph.

    x ──U-Net G (skip connections)──► x̂
    score = λ · mean|x − x̂| + (1 − λ) · mean (f(x) − f(x̂))²        λ = 0.9
    anomaly_map = mean_c |x − x̂|   (input resolution)

f is the discriminator's feature stack (its penultimate 4x4 layer), so it lives here, inside the
exported graph; the discriminator's 1-logit classifier is training-only (edgeano.train.adversarial).
Both terms are means over elements (the reference code's choice; λ weighs their averages).
"""

from __future__ import annotations

from typing import Dict

import torch

from edgeano.data.preprocess import Preprocess
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import Encoder, UNetGenerator, weights_init
from edgeano.models.registry import register


@register("skip-ganomaly")
class SkipGANomaly(AnomalyModel):
    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, width: int = 64, lam: float = 0.9):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"Skip-GANomaly needs a square input, got {h}x{w}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.width, self.lam = int(width), float(lam)
        self.generator = UNetGenerator(h, c, c, self.width)
        self.features = Encoder(h, c, 1, self.width).features  # the discriminator's f(.)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"width": self.width, "lam": self.lam}

    def extra_metadata(self) -> Dict:
        return {"backbone": "unet-dcgan", "lambda": self.lam,
                "score": "lam*mean|x-x_hat| + (1-lam)*mean (f(x)-f(x_hat))^2"}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        x_hat = self.generator(xn)
        residual = (xn - x_hat).abs()
        f_real, f_fake = self.features(xn), self.features(x_hat)
        rec = residual.flatten(1).mean(1)
        lat = (f_real - f_fake).pow(2).flatten(1).mean(1)
        return {"score": self.lam * rec + (1.0 - self.lam) * lat, "anomaly_map": residual.mean(1)}
