"""PyTorch runner with the same `infer(x) -> {name: array}` shape as the runtime backends, so
eval and parity tests treat PyTorch as one more backend."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.runtime.engine import Engine


class TorchRunner:
    def __init__(self, model, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device
        self.output_names = list(model.output_names)
        self.max_batch = 32  # bounds memory on big eval sets
        self.name = f"pytorch-{device}"

    @torch.inference_mode()
    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return {k: out[k].float().cpu().numpy() for k in self.output_names}


def engine_from_checkpoint(path, device: str = "cpu", threshold=None) -> Engine:
    model, ckpt = load_checkpoint(path, device)
    return Engine(TorchRunner(model, device), checkpoint_metadata(model, ckpt), threshold)
