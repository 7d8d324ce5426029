"""Pieces every model shares: the in-graph Normalize layer and the AnomalyModel base class."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from torch import nn

from edgeano.data.preprocess import CONTRAST_MIN_STD, CONTRAST_SIGMAS, Preprocess
from edgeano.errors import EdgeanoError

# what torch.load raises for truncated, foreign or pickled-module files under weights_only=True
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError)


def load_torch_file(path, what: str) -> Any:
    """torch.load(weights_only=True) on CPU; missing or unreadable files become one-line errors
    naming `what` ("checkpoint", "PyTorch weight file")."""
    path = Path(path)
    if not path.is_file():
        raise EdgeanoError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. a two-line UserWarning about a pickle protocol, before refusing the file
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as e:
        raise EdgeanoError(f"{path} is not a readable {what} (truncated or wrong file?): {type(e).__name__}")


class Normalize(nn.Module):
    """(x - mean) / std as the graph's first op, so preprocessing travels inside the artifact;
    with contrast="standardize", per-image contrast normalisation first (Preprocess documents it)."""

    def __init__(self, mean, std, contrast: str = "none"):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.standardize = contrast == "standardize"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            mu = _image_mean(x)
            sd = _image_mean((x - mu).pow(2)).sqrt().clamp_min(CONTRAST_MIN_STD)
            x = torch.clamp(0.5 + (x - mu) / (2 * CONTRAST_SIGMAS * sd), 0.0, 1.0)
        return (x - self.mean) * self.inv_std


def _image_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over C, H, W as three reductions (W, then H, then C): the same number, but each step
    sums at most one image side. One ReduceMean over 224x224x3 made ONNX Runtime's CPU kernel
    disagree with PyTorch by up to 1.7e-4 on MTD images after the contrast step (its float32
    accumulation); staged, 1.2e-6. FP16 accumulation has even less room, hence the same rule."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True).mean(dim=1, keepdim=True)


class AnomalyModel(nn.Module):
    """Base class: holds the Preprocess it was trained with and names its outputs in order."""

    name: str = "base"
    output_names: Tuple[str, ...] = ("score",)

    def __init__(self, preprocess: Preprocess):
        super().__init__()
        self.preprocess = preprocess
        self.normalize = Normalize(preprocess.mean, preprocess.std, preprocess.contrast)

    def config(self) -> Dict:
        """JSON-able constructor arguments (besides `preprocess`) to rebuild this model from a checkpoint."""
        raise NotImplementedError

    def extra_metadata(self) -> Dict:
        """Model-specific fields for the artifact metadata (e.g. backbone)."""
        return {}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class OutputTuple(nn.Module):
    """Wraps a model so forward returns a tuple in `output_names` order (what ONNX export wants)."""

    def __init__(self, model: AnomalyModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        return tuple(out[k] for k in self.model.output_names)
