"""The single preprocessing definition shared by training, export checks, eval and the camera loop.

`Preprocess` turns BGR uint8 frames of any size into the network input: resize to `size`,
reorder colours, scale to [0, 1], NCHW float32. Mean/std normalisation is *not* done here: it
is the first layer of every edgeano model (`models.common.Normalize`), so it travels inside the
exported graph. `mean`/`std` are recorded here so that layer and the artifact metadata agree.

`contrast="standardize"` adds per-image contrast normalisation to that first layer: each image
is shifted and scaled so its own mean lands at mid-grey and +/-3 of its own standard deviations
span [0, 1] (clipped), before mean/std. It is for parts photographed under varying exposure
(Magnetic Tile Defects: image means from 0.19 to 0.87), where absolute brightness would otherwise
dominate what a reconstruction model learns; it also discards brightness as evidence, so a part
that is defective only by being uniformly darker will not be seen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Sequence, Tuple

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}
COLORS = ("RGB", "BGR", "GRAY")
CONTRASTS = ("none", "standardize")
CONTRAST_SIGMAS = 3.0  # standardize: mean +/- 3 sigma of the image -> [0, 1]
CONTRAST_MIN_STD = 1.0 / 255  # sigma floor (one 8-bit level): a flat image maps to mid-grey, and rounding noise is not amplified
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    size: Tuple[int, int] = (224, 224)  # (H, W) of the network input
    color: str = "RGB"  # channel order the network expects; GRAY gives one channel
    mean: Tuple[float, ...] = IMAGENET_MEAN  # applied inside the graph, after scaling to [0, 1]
    std: Tuple[float, ...] = IMAGENET_STD
    interpolation: str = "area"
    contrast: str = "none"  # "standardize": per-image contrast normalisation, in the graph (see above)
    layout: str = field(default="NCHW", repr=False)
    scale: float = field(default=1.0 / 255.0, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"size must be (H, W) with both >= 8, got {self.size}")
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {self.color!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {self.contrast!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values for color {self.color}")
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"std values must be finite and > 0, mean values finite; got mean {self.mean}, std {self.std}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be finite and > 0 (1/255 for 8-bit images), got {self.scale}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (self.channels, self.size[0], self.size[1])

    def image(self, bgr: np.ndarray) -> np.ndarray:
        """One HxWx3 uint8 BGR frame -> CxHxW float32 in [0, 1]."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 BGR, got {bgr.shape} {bgr.dtype}")
        h, w = self.size
        if bgr.shape[:2] != (h, w):
            bgr = cv2.resize(bgr, (w, h), interpolation=INTERPOLATIONS[self.interpolation])
        if self.color == "RGB":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        elif self.color == "GRAY":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
        else:
            img = bgr
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) * np.float32(self.scale)

    def batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """A list of BGR frames (any sizes) -> NxCxHxW float32."""
        out = np.empty((len(frames),) + self.input_shape, dtype=np.float32)
        for i, f in enumerate(frames):
            out[i] = self.image(f)
        return out

    __call__ = batch

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """What the graph's first layer does; numpy twin used by tests to pin the contract."""
        if self.contrast == "standardize":
            mu = x.mean(axis=(1, 2, 3), keepdims=True)
            sd = np.sqrt(((x - mu) ** 2).mean(axis=(1, 2, 3), keepdims=True))
            x = np.clip(0.5 + (x - mu) / (2 * CONTRAST_SIGMAS * np.maximum(sd, CONTRAST_MIN_STD)), 0.0, 1.0)
        m = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (x - m) / s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["channels"] = self.channels
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        keys = ("size", "color", "mean", "std", "interpolation", "contrast", "layout", "scale")
        return cls(**{k: d[k] for k in keys if k in d})

    def resize_map(self, amap: np.ndarray, shape_hw: Tuple[int, int]) -> np.ndarray:
        """Bring a model-resolution anomaly map back to a frame's (H, W) for overlays."""
        return cv2.resize(amap.astype(np.float32), (int(shape_hw[1]), int(shape_hw[0])), interpolation=cv2.INTER_LINEAR)


def split_every(n: int, k: int) -> Tuple[List[int], List[int]]:
    """Deterministic split of range(n): every k-th index (0, k, 2k...) held out, the rest kept."""
    held = list(range(0, n, k))
    kept = [i for i in range(n) if i % k != 0]
    return kept, held
