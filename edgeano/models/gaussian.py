"""Gaussian anomaly detection in pre-trained deep features (Rippel, Mertens, Merhof, 2020:
"Modeling the distribution of normal data in pre-trained deep features for anomaly detection").

For each chosen backbone level l, the feature map is globally pooled to a vector f_l; the normal
images' f_l are modelled by a multivariate Gaussian N(mu_l, Sigma_l) with Sigma_l shrunk by
Ledoit-Wolf (there are fewer images than dimensions). An image's score is the sum over levels of
the squared Mahalanobis distance d_l^2 = (f_l - mu_l)^T Sigma_l^-1 (f_l - mu_l).

We store W_l with W_l W_l^T = Sigma_l^-1 (W_l = C_l^-T for the Cholesky factor C_l of Sigma_l),
so d_l^2 = ||(f_l - mu_l) @ W_l||^2: one MatMul in the exported graph, no matrix inverse at
runtime. The score is divided by the total feature dimension D (folded into W_l): the same
ranking as the paper's sum, but ~1 for normal images so it stays far inside FP16 range.

With `map_levels`, the same backbone pass also feeds a nearest-neighbour patch map
(edgeano/models/patch_map.py): the model then outputs `anomaly_map` (N, H, W) and an image score
that adds the map's evidence to the global one, each in units of its spread on normal images:

    score = g / sd_g + map_weight * (max(map) - floor) / sd_m

(sd: the spread of each on out-of-fold normal images, at fitting; floor: the lowest value the map
can take. Both terms are >= 0, so the score is too, and it ranks images as the sum of the two
z-scores does). The global score g alone is `global_score` in
`forward`'s dict; a model fitted without map levels is the plain Rippel model (score = g).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.models.backbones import BACKBONES, LEVEL_CHANNELS, N_LEVELS, create_backbone
from edgeano.models.common import AnomalyModel
from edgeano.models.patch_map import PatchMap
from edgeano.models.registry import register

DEFAULT_BACKBONE = "efficientnet-lite0"
DEFAULT_LEVELS: Tuple[int, ...] = (4, 5, 6, 7)  # stages 4-7, no head: best on MTD (docs/benchmarks/gaussian.md)
DEFAULT_POOL = "avgmax"
POOLS = ("avg", "max", "avgmax")  # global pooling of each level's map; avgmax concatenates both


def feature_dims(levels: Sequence[int], pool: str = "avg") -> List[int]:
    return [LEVEL_CHANNELS[i] * (2 if pool == "avgmax" else 1) for i in levels]


def ledoit_wolf(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, shrunk covariance, shrinkage) of samples x (n, p), in float64.

    Ledoit & Wolf (2004): Sigma = (1 - a) S + a m I with m = tr(S)/p and
    a = min(b^2, d^2) / d^2, d^2 = ||S - m I||_F^2 / p, b^2 = sum_k ||x_k x_k^T - S||_F^2 / (n^2 p).
    b^2 is computed without the n outer products: sum_k ||x_k||^4 - n ||S||_F^2.
    """
    x = x.double()
    n, p = x.shape
    if n < 2:
        raise EdgeanoError(f"need at least 2 normal images to fit a Gaussian, got {n}")
    mean = x.mean(0)
    xc = x - mean
    s = xc.T @ xc / n
    m = torch.trace(s) / p
    d2 = ((s - m * torch.eye(p, dtype=s.dtype)) ** 2).sum() / p
    sq_norms = (xc * xc).sum(1)
    b2_bar = ((sq_norms**2).sum() - n * (s * s).sum()) / (n * n * p)
    b2 = torch.minimum(b2_bar, d2)
    a = float(b2 / d2) if float(d2) > 0 else 1.0
    cov = (1 - a) * s + a * m * torch.eye(p, dtype=s.dtype)
    return mean, cov, a


def precision_factor(cov: torch.Tensor) -> torch.Tensor:
    """W with W W^T = cov^-1: W = C^-T for cov = C C^T. Falls back to a tiny ridge when the
    covariance is singular (e.g. constant features)."""
    cov = cov.double()
    p = cov.shape[0]
    eye = torch.eye(p, dtype=cov.dtype)
    ridge = 0.0
    for _ in range(6):
        c, info = torch.linalg.cholesky_ex(cov + ridge * eye)
        if int(info) == 0:
            return torch.linalg.solve_triangular(c, eye, upper=False).T
        ridge = max(ridge * 10, 1e-10 * float(torch.trace(cov)) / p or 1e-10)
    raise EdgeanoError("feature covariance is not positive definite even with a ridge: are all training images identical?")


class LevelGaussian(nn.Module):
    """One level's N(mu, Sigma), kept as mean and precision factor (buffers, so they checkpoint)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("factor", torch.zeros(dim, dim))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return ((f - self.mean) @ self.factor).pow(2).sum(1)


@register("gaussian")
class GaussianAD(AnomalyModel):
    output_names = ("score",)

    def __init__(self, preprocess: Preprocess, backbone: str = DEFAULT_BACKBONE, levels: Sequence[int] = DEFAULT_LEVELS,
                 pool: str = DEFAULT_POOL, dims: Optional[Sequence[int]] = None, padding: str = "same", bn_eps: float = 1e-3,
                 map_levels: Sequence[int] = (), memory_size: int = 0, map_weight: float = 1.0):
        super().__init__(preprocess)
        levels = [int(i) for i in levels]
        if backbone not in BACKBONES:
            raise EdgeanoError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
        map_levels = [int(i) for i in map_levels]
        for what, lv in (("levels", levels), ("map levels", map_levels)):
            if (lv or what == "levels") and (not lv or len(set(lv)) != len(lv) or not all(0 <= i < N_LEVELS for i in lv)):
                raise EdgeanoError(f"{what} must be distinct numbers in 0..{N_LEVELS - 1}, got {lv}")
        if map_levels and int(memory_size) < 1:
            raise EdgeanoError(f"a patch map needs memory_size >= 1, got {memory_size}")
        if pool not in POOLS:
            raise EdgeanoError(f"pool must be one of {POOLS}, got {pool!r}")
        if preprocess.channels != 3:
            raise EdgeanoError("the Gaussian model's ImageNet backbone needs 3-channel input (color RGB or BGR)")
        expected = feature_dims(levels, pool)
        if dims is not None and list(dims) != expected:
            raise EdgeanoError(f"feature dims {list(dims)} do not match levels {levels} of {backbone} ({expected})")
        self.backbone_name, self.levels, self.pool, self.dims = backbone, levels, pool, expected
        # Random init here: a checkpoint's state dict carries the backbone weights, so loading
        # never needs the ImageNet file; only fitting does (see edgeano.train.gaussian).
        self.backbone = create_backbone(backbone, padding=padding, bn_eps=bn_eps)
        self.gaussians = nn.ModuleList(LevelGaussian(d) for d in expected)
        self.map_weight = float(map_weight)
        self.patch_map = PatchMap(map_levels, preprocess.size, memory_size) if map_levels else None
        if self.patch_map is not None:  # (sd_g, sd_m, floor): the units the two evidences are added in
            self.register_buffer("fusion", torch.tensor([1.0, 1.0, 0.0]))
        self.output_names = ("score", "anomaly_map") if self.patch_map is not None else ("score",)

    def config(self) -> Dict:
        cfg = {"backbone": self.backbone_name, "levels": list(self.levels), "pool": self.pool, "dims": list(self.dims),
               "padding": self.backbone.padding, "bn_eps": self.backbone.bn_eps}
        if self.patch_map is not None:
            cfg.update(map_levels=list(self.patch_map.levels), memory_size=self.patch_map.memory_size, map_weight=self.map_weight)
        return cfg

    def extra_metadata(self) -> Dict:
        meta = {"backbone": self.backbone_name, "levels": list(self.levels), "pool": self.pool}
        if self.patch_map is not None:
            meta.update(map_levels=list(self.patch_map.levels), memory_size=self.patch_map.memory_size, map_weight=self.map_weight,
                        score="g/sd_g + map_weight * (max(anomaly_map) - floor)/sd_m; g = Gaussian score, anomaly_map = "
                              "squared nearest-neighbour patch distance, standardised per position on normal images")
        return meta

    def backbone_maps(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        """[0, 1] NCHW images -> {level: feature map} for every level the model reads, one pass."""
        want = sorted(set(self.levels) | set(self.patch_map.levels if self.patch_map is not None else ()))
        return dict(zip(want, self.backbone.forward_features(self.normalize(x), want)))

    def pooled(self, maps: Dict[int, torch.Tensor]) -> List[torch.Tensor]:
        """One globally pooled (N, dim) vector per Gaussian level."""
        maps = [maps[i] for i in self.levels]
        if self.pool == "avg":
            return [m.mean((2, 3)) for m in maps]
        if self.pool == "max":
            return [m.amax((2, 3)) for m in maps]
        return [torch.cat([m.mean((2, 3)), m.amax((2, 3))], 1) for m in maps]

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """[0, 1] NCHW images -> one pooled (N, dim) vector per level."""
        return self.pooled(self.backbone_maps(x))

    @torch.no_grad()
    def fit_gaussians(self, feats: Sequence[torch.Tensor], progress=None) -> List[float]:
        """Fit every level from per-level (n, dim) features; returns the Ledoit-Wolf shrinkages."""
        scale = float(sum(self.dims)) ** -0.5  # score = sum d^2 / D, see module doc
        shrinkages = []
        for g, f in zip(self.gaussians, feats):
            mean, cov, a = ledoit_wolf(f)
            g.mean.copy_(mean.float())
            g.factor.copy_((precision_factor(cov) * scale).float())
            shrinkages.append(a)
            if progress is not None:
                progress.update(1)
        return shrinkages

    def score_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum(g(f) for g, f in zip(self.gaussians, feats))

    def fuse(self, g: torch.Tensor, amap: torch.Tensor) -> torch.Tensor:
        sd_g, sd_m, floor = self.fusion
        return g / sd_g + self.map_weight * (amap.amax((1, 2)) - floor) / sd_m

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps = self.backbone_maps(x)
        g = self.score_features(self.pooled(maps))
        if self.patch_map is None:
            return {"score": g}
        amap = self.patch_map(maps)
        return {"score": self.fuse(g, amap), "anomaly_map": amap, "global_score": g}
