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
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.models.backbones import BACKBONES, LEVEL_CHANNELS, N_LEVELS, create_backbone
from edgeano.models.common import AnomalyModel
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
                 pool: str = DEFAULT_POOL, dims: Optional[Sequence[int]] = None, padding: str = "same", bn_eps: float = 1e-3):
        super().__init__(preprocess)
        levels = [int(i) for i in levels]
        if backbone not in BACKBONES:
            raise EdgeanoError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
        if not levels or len(set(levels)) != len(levels) or not all(0 <= i < N_LEVELS for i in levels):
            raise EdgeanoError(f"levels must be distinct numbers in 0..{N_LEVELS - 1}, got {levels}")
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

    def config(self) -> Dict:
        return {"backbone": self.backbone_name, "levels": list(self.levels), "pool": self.pool, "dims": list(self.dims),
                "padding": self.backbone.padding, "bn_eps": self.backbone.bn_eps}

    def extra_metadata(self) -> Dict:
        return {"backbone": self.backbone_name, "levels": list(self.levels), "pool": self.pool}

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """[0, 1] NCHW images -> one pooled (N, dim) vector per level."""
        maps = self.backbone.forward_features(self.normalize(x), self.levels)
        if self.pool == "avg":
            return [m.mean((2, 3)) for m in maps]
        if self.pool == "max":
            return [m.amax((2, 3)) for m in maps]
        return [torch.cat([m.mean((2, 3)), m.amax((2, 3))], 1) for m in maps]

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

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"score": self.score_features(self.features(x))}
