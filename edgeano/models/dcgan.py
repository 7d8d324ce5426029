"""DCGAN building blocks shared by GANomaly and Skip-GANomaly (Radford et al. 2016, as used by
Akçay et al.'s reference code): a strided-conv encoder, a transposed-conv decoder, a
discriminator that also returns its penultimate features, a pix2pix-style U-Net, and the
N(0, 0.02) initialisation both papers use."""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn

IMG_SIZES = (32, 64, 128, 256)


def check_img_size(img_size: int) -> int:
    if img_size not in IMG_SIZES:
        raise ValueError(f"img_size must be a power of two in {IMG_SIZES}, got {img_size}")
    return int(img_size)


def weights_init(m: nn.Module) -> None:
    """Conv weights ~ N(0, 0.02), BatchNorm gamma ~ N(1, 0.02), beta = 0 (DCGAN)."""
    if isinstance(m, nn.modules.conv._ConvNd):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _pyramid_depth(img_size: int) -> int:
    """Number of stride-2 stages from img_size down to 4x4 (32 -> 3, 128 -> 5)."""
    return int(math.log2(img_size)) - 2


class Encoder(nn.Module):
    """img (N, C, S, S) -> (N, nz, 1, 1). Stride-2 4x4 convs double the width until 4x4, then a
    4x4 valid conv to the latent. `features` ends at the 4x4 map (the discriminator's penultimate layer)."""

    def __init__(self, img_size: int, in_ch: int, nz: int, width: int = 64):
        super().__init__()
        depth = _pyramid_depth(check_img_size(img_size))
        layers: List[nn.Module] = [nn.Conv2d(in_ch, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        ch = width
        for _ in range(depth - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.out_channels = ch
        self.head = nn.Conv2d(ch, nz, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """(N, nz, 1, 1) -> img (N, C, S, S) in [-1, 1]: the encoder mirrored with transposed convs."""

    def __init__(self, img_size: int, out_ch: int, nz: int, width: int = 64):
        super().__init__()
        depth = _pyramid_depth(check_img_size(img_size))
        ch = width * 2 ** (depth - 1)
        layers: List[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(depth - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, out_ch, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """DCGAN discriminator: `features` (an Encoder's conv stack, to 4x4) + a 4x4 conv to one logit.
    forward returns (logits (N,), features (N, C, 4, 4)); the losses use BCE-with-logits, which is the
    reference's Sigmoid + BCELoss computed stably."""

    def __init__(self, img_size: int, in_ch: int, width: int = 64, features: nn.Module = None):
        super().__init__()
        enc = Encoder(img_size, in_ch, 1, width)
        self.features = features if features is not None else enc.features
        self.classifier = enc.head  # the 4x4 valid conv to 1 channel

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.classifier(f).flatten(), f


class UNetGenerator(nn.Module):
    """pix2pix U-Net (Isola et al.) down to 1x1, as in Skip-GANomaly: each decoder stage sees the
    matching encoder stage through a skip connection (channel concat), so fine detail needs no
    trip through the bottleneck."""

    def __init__(self, img_size: int, in_ch: int, out_ch: int, width: int = 64):
        super().__init__()
        n = int(math.log2(check_img_size(img_size)))  # stride-2 stages to reach 1x1
        widths = [min(width * 2 ** i, width * 8) for i in range(n)]  # 64,128,256,512,512,...
        self.down = nn.ModuleList()
        prev = in_ch
        for i, w in enumerate(widths):
            layers: List[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(prev, w, 4, 2, 1, bias=False))
            if 0 < i < n - 1:  # no norm on the outermost input or the 1x1 innermost
                layers.append(nn.BatchNorm2d(w))
            self.down.append(nn.Sequential(*layers))
            prev = w
        self.up = nn.ModuleList()
        for i in reversed(range(n)):
            cin = widths[i] if i == n - 1 else widths[i] * 2  # innermost gets no skip, the rest concat
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(cin, out_ch, 4, 2, 1), nn.Tanh()))
            else:
                cout = widths[i - 1]
                self.up.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the first up stage directly
        for u in self.up:
            x = u(x)
            if skips:
                x = torch.cat([skips.pop(), x], 1)
        return x
