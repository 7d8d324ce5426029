"""OE-SDN: outlier-exposed style distillation network (Chung, Park, Keum, Ki, Kang: "Unsupervised
Anomaly Detection Using Style Distillation", IEEE Access 2020), inference graph.

    x ──AE──────────► AE(x)        an autoencoder trained on normal images (L2)
    x ──SDN (U-Net)─► SDN(x)       learns to produce AE(x) from x on normal images,
                                   and x itself on outlier-exposure images (rotated normals)
    anomaly_map = mean_c |SDN(x) − AE(x)|                 score = mean of the map

An AE blurs every image a little (its "style": what its bottleneck cannot carry) and a defect a lot
(its "content": what it never learnt). Scoring |x − AE(x)| mixes the two, so normal texture the AE
blurs looks anomalous. The SDN, a higher-capacity image-to-image network with skip connections,
learns the style alone: on normal images it mimics the AE's output; on outliers (rotations of
training images, which the AE reconstructs badly) it is taught to copy its input instead of
imitating the AE. On a defect, then, the SDN keeps the defect while the AE removes it, and their
difference is the defect, without the AE's normal blur. Both networks are in the exported graph.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from edgeano.data.preprocess import Preprocess
from edgeano.models.ae import Autoencoder
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import UNetGenerator, weights_init
from edgeano.models.registry import register


@register("oe-sdn")
class OESDN(AnomalyModel):
    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64, sdn_width: Optional[int] = None,
                 lam: float = 0.5):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"OE-SDN needs a square input, got {h}x{w}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.nz, self.width, self.lam = int(nz), int(width), float(lam)
        self.sdn_width = self.width if sdn_width is None else int(sdn_width)  # the U-Net's skips are its extra capacity
        self.ae = Autoencoder(h, c, self.nz, self.width)
        self.sdn = UNetGenerator(h, c, c, self.sdn_width)
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "sdn_width": self.sdn_width, "lam": self.lam}

    def extra_metadata(self) -> Dict:
        return {"backbone": "dcgan-ae + unet-sdn", "latent": self.nz, "lambda": self.lam,
                "score": "mean over pixels of the map; map = mean_c |SDN(x) - AE(x)|"}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        amap = (self.sdn(xn) - self.ae(xn)).abs().mean(1)
        return {"score": amap.flatten(1).mean(1), "anomaly_map": amap}
