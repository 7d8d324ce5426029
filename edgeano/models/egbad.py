"""EGBAD: Efficient GAN-Based Anomaly Detection (Zenati, Foo, Lecouat, Manek, Chandrasekhar,
ICLR 2018 workshop), inference graph.

A BiGAN (Donahue et al. 2017; ALI, Dumoulin et al. 2017) trained on normal images: a generator
G: z -> x, an encoder E: x -> z, and a discriminator D(x, z) that sees image and code together
and tells the pairs (x, E(x)) from (G(z), z). At the optimum E inverts G, so scoring needs one
pass instead of AnoGAN's latent search:

    z = E(x),  x̂ = G(z)
    score = α · ‖x − x̂‖₁ + (1 − α) · ‖f_D(x, z) − f_D(x̂, z)‖₁        α = 0.9
    anomaly_map = mean_c |x − x̂|

‖·‖₁ are per-image sums, as in the paper's code; f_D is D's joint layer before its logit (the
"feature matching" variant of the discriminator score). D's logit layer is training-only.
Training: edgeano.train.gan_steps.BiGANStep.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.models.common import AnomalyModel
from edgeano.models.dcgan import Decoder, Encoder, weights_init
from edgeano.models.registry import register

JOINT = 512  # units of each branch and of the joint layer (the paper's 1024 for 28-32 px images, halved)
D_DROPOUT = 0.2


class JointDiscriminator(nn.Module):
    """D(x, z): x through the DCGAN conv stack to a vector, z through a 1x1-conv layer, the two
    concatenated through one more layer (f_D), then one logit. 1x1 convs on (N, C, 1, 1) tensors
    stand in for linear layers, so the graph needs no reshapes."""

    def __init__(self, img_size: int, channels: int, nz: int, width: int):
        super().__init__()
        enc = Encoder(img_size, channels, JOINT, width)
        act = [nn.LeakyReLU(0.2, True), nn.Dropout(D_DROPOUT)]
        self.x_branch = nn.Sequential(enc.features, enc.head, *act)
        self.z_branch = nn.Sequential(nn.Conv2d(nz, JOINT, 1), *act)
        self.joint = nn.Sequential(nn.Conv2d(2 * JOINT, JOINT, 1), *act)
        self.logit = nn.Conv2d(JOINT, 1, 1)

    def features(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_branch(x), self.z_branch(z)], 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x, z)
        return self.logit(f).flatten(), f


@register("egbad")
class EGBAD(AnomalyModel):
    output_names = ("score", "anomaly_map")

    def __init__(self, preprocess: Preprocess, nz: int = 100, width: int = 64, alpha: float = 0.9):
        super().__init__(preprocess)
        c, h, w = preprocess.input_shape
        if h != w:
            raise ValueError(f"EGBAD needs a square input, got {h}x{w}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.nz, self.width, self.alpha = int(nz), int(width), float(alpha)
        self.encoder = Encoder(h, c, self.nz, self.width)  # E
        self.generator = Decoder(h, c, self.nz, self.width)  # G
        self.discriminator = JointDiscriminator(h, c, self.nz, self.width)  # D
        self.apply(weights_init)

    def config(self) -> Dict:
        return {"nz": self.nz, "width": self.width, "alpha": self.alpha}

    def extra_metadata(self) -> Dict:
        return {"backbone": "dcgan-bigan", "latent": self.nz, "alpha": self.alpha,
                "score": "alpha*|x - G(E(x))|_1 + (1-alpha)*|f_D(x, E(x)) - f_D(G(E(x)), E(x))|_1"}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        xn = self.normalize(x)
        z = self.encoder(xn)
        x_hat = self.generator(z)
        residual = (xn - x_hat).abs()
        fm = (self.discriminator.features(xn, z) - self.discriminator.features(x_hat, z)).abs()
        score = self.alpha * residual.flatten(1).sum(1) + (1.0 - self.alpha) * fm.flatten(1).sum(1)
        return {"score": score, "anomaly_map": residual.mean(1)}
