"""What a run needs to resume exactly: RNG states and tensors as values that
torch.load(weights_only=True) reads back (no pickled objects)."""

from __future__ import annotations

import random
from typing import Dict

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng() -> Dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = random.getstate()
    rng = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "python": [st[0], list(st[1]), st[2]]}
    if torch.cuda.is_available():  # noise and D re-inits on a GPU draw from the CUDA generator
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng(rng: Dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))


def to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
