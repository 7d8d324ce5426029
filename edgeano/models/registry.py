"""name -> model class. Model modules register themselves; `_MODULES` lists where to find them."""

from __future__ import annotations

import importlib
from typing import Dict, List, Type

from edgeano.errors import EdgeanoError

_REGISTRY: Dict[str, type] = {}
# Imported on first lookup so `import edgeano.models` stays cheap.
_MODULES = ("edgeano.models.gaussian", "edgeano.models.ganomaly", "edgeano.models.skip_ganomaly", "edgeano.models.anogan",
            "edgeano.models.egbad", "edgeano.models.ae", "edgeano.models.vae", "edgeano.models.rvae", "edgeano.models.oe_sdn")


def register(name: str):
    def deco(cls: Type) -> Type:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency, not a model file not written yet
                raise


def model_names() -> List[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_class(name: str) -> Type:
    _load_all()
    if name not in _REGISTRY:
        raise EdgeanoError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


def create(name: str, preprocess, **config):
    return model_class(name)(preprocess=preprocess, **config)
