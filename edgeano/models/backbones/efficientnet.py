"""EfficientNet-B0 and EfficientNet-Lite0 (Tan & Le, 2019), written out so we need neither
torchvision nor timm, with a `forward_features` that returns the output of every level.

Levels (what the Gaussian AD model pools): 0 = stem, 1..7 = the seven MBConv stages, 8 = head.

Lite0 is B0 without squeeze-excitation, with ReLU6 instead of SiLU, and with the stem (32) and
head (1280) widths fixed; at width/depth 1.0 both have the same stage layout.

Two padding conventions exist for the same weights' ancestry: checkpoints converted from
TensorFlow (lukemelas, Lite0) expect TF "same" padding (asymmetric for stride 2); torchvision's
B0 (trained in PyTorch by rwightman) expects symmetric k//2 padding. `padding` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, out channels, repeats) for B0 / Lite0 at width = depth = 1.0.
STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, HEAD = 32, 1280
LEVEL_CHANNELS = (STEM,) + tuple(s[3] for s in STAGES) + (HEAD,)
LEVEL_STRIDES = (2, 2, 4, 8, 16, 16, 32, 32, 32)
N_LEVELS = len(LEVEL_CHANNELS)


@dataclass(frozen=True)
class Variant:
    se: bool  # squeeze-excitation in every block
    act: str  # "silu" or "relu6"


VARIANTS: Dict[str, Variant] = {
    "efficientnet-b0": Variant(se=True, act="silu"),
    "efficientnet-lite0": Variant(se=False, act="relu6"),
}


def _act(name: str) -> nn.Module:
    return nn.SiLU(inplace=True) if name == "silu" else nn.ReLU6(inplace=True)


class ConvBN(nn.Sequential):
    """conv -> BN (-> activation). `padding="same"` pads like TensorFlow: extra pixel at the end."""

    def __init__(self, cin, cout, k, stride=1, groups=1, act=None, padding="symmetric", bn_eps=1e-5):
        # TF "same" equals symmetric k//2 padding at stride 1; only strided convs need a Pad op.
        self.k, self.stride, self.same = k, stride, padding == "same" and stride > 1
        pad = 0 if self.same else k // 2
        layers = [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=bn_eps)]
        if act:
            layers.append(_act(act))
        super().__init__(*layers)

    def forward(self, x):
        if self.same:
            # value=0.0 exports Pad with an explicit constant: ONNX Runtime fuses only that form into
            # the conv (Pad(x, pads, "") stays a separate op and costs ~1/5 of the Gaussian model's time)
            x = F.pad(x, _same_pad(int(x.shape[-2]), int(x.shape[-1]), self.k, self.stride), value=0.0)
        return super().forward(x)


def _same_pad(h: int, w: int, k: int, s: int) -> Tuple[int, int, int, int]:
    """TF SAME: total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel going right/bottom.
    Sizes are Python ints, so an exported graph gets constant pads (export is fixed-size)."""

    def total(n):
        return max((-(-n // s) - 1) * s + k - n, 0)

    th, tw = total(h), total(w)
    return (tw // 2, tw - tw // 2, th // 2, th - th // 2)


class SqueezeExcite(nn.Module):
    """Channel attention; the bottleneck is 1/4 of the *block input* width, as in the paper's code."""

    def __init__(self, channels: int, reduced: int, act: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = _act(act)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> (SE) -> 1x1 project (+ identity)."""

    def __init__(self, cin, cout, expand, k, stride, variant: Variant, padding, bn_eps):
        super().__init__()
        mid = cin * expand
        kw = dict(padding=padding, bn_eps=bn_eps)
        self.conv_pw = ConvBN(cin, mid, 1, act=variant.act, **kw) if expand != 1 else None
        self.conv_dw = ConvBN(mid, mid, k, stride, groups=mid, act=variant.act, **kw)
        self.se = SqueezeExcite(mid, max(1, cin // 4), variant.act) if variant.se else None
        self.conv_pwl = ConvBN(mid, cout, 1, **kw)
        self.residual = stride == 1 and cin == cout  # drop-path is a training-time detail we never need

    def forward(self, x):
        y = self.conv_pw(x) if self.conv_pw is not None else x
        y = self.conv_dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.conv_pwl(y)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    def __init__(self, name: str = "efficientnet-lite0", num_classes: int = 1000, padding: str = "same", bn_eps: float = 1e-3):
        super().__init__()
        if name not in VARIANTS:
            raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(VARIANTS)}")
        if padding not in ("same", "symmetric"):
            raise ValueError(f"padding must be 'same' or 'symmetric', got {padding!r}")
        v = VARIANTS[name]
        self.name, self.padding, self.bn_eps = name, padding, bn_eps
        kw = dict(padding=padding, bn_eps=bn_eps)
        self.stem = ConvBN(3, STEM, 3, 2, act=v.act, **kw)
        stages, cin = [], STEM
        for expand, k, stride, cout, repeats in STAGES:
            blocks = [MBConv(cin if i == 0 else cout, cout, expand, k, stride if i == 0 else 1, v, **kw) for i in range(repeats)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = ConvBN(cin, HEAD, 1, act=v.act, **kw)
        self.classifier = nn.Linear(HEAD, num_classes) if num_classes else None

    def forward_features(self, x: torch.Tensor, levels: Sequence[int]) -> List[torch.Tensor]:
        """Feature maps of the requested levels (in the order asked); stops after the deepest one."""
        want = sorted(set(levels))
        if not want or want[0] < 0 or want[-1] >= N_LEVELS:
            raise ValueError(f"levels must be in 0..{N_LEVELS - 1}, got {list(levels)}")
        out: Dict[int, torch.Tensor] = {}
        x = self.stem(x)
        out[0] = x
        for i, stage in enumerate(self.stages, start=1):
            if i > want[-1]:
                break
            x = stage(x)
            out[i] = x
        if want[-1] == N_LEVELS - 1:
            out[N_LEVELS - 1] = self.head(x)
        return [out[i] for i in levels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (x already normalised)."""
        f = self.forward_features(x, [N_LEVELS - 1])[0].mean((2, 3))
        return self.classifier(f)


def efficientnet(name: str, **kwargs) -> EfficientNet:
    return EfficientNet(name, **kwargs)
