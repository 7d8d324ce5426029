"""Feature extractors for the anomaly models. Written in the project (no torchvision/timm).

    net = create_backbone("efficientnet-lite0")               # random init, for loading checkpoints
    net, source = pretrained("efficientnet-lite0")            # ImageNet weights (offline for Lite0)
    feats = net.forward_features(x, levels=[3, 4, 5, 6, 7])
"""

from edgeano.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgeano.models.backbones.efficientnet import LEVEL_CHANNELS, LEVEL_STRIDES, N_LEVELS, VARIANTS, EfficientNet
from edgeano.models.backbones.weights import pretrained

BACKBONES = tuple(VARIANTS)

# Input normalisation each backbone's weights were trained with: TF's Lite models see
# (x - 127) / 128; torchvision/lukemelas B0 see ImageNet mean/std.
NORMALIZATION = {
    "efficientnet-lite0": ((127.0 / 255,) * 3, (128.0 / 255,) * 3),
    "efficientnet-b0": (IMAGENET_MEAN, IMAGENET_STD),
}


def create_backbone(name: str, **arch) -> EfficientNet:
    """Untrained backbone of the given architecture; `arch` = padding / bn_eps of its weights."""
    return EfficientNet(name, num_classes=0, **arch)


__all__ = ["BACKBONES", "NORMALIZATION", "LEVEL_CHANNELS", "LEVEL_STRIDES", "N_LEVELS", "EfficientNet", "create_backbone", "pretrained"]
