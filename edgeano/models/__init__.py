"""Anomaly models (torch). Each model file reads like its paper; `registry` maps names to classes.

Every model is an `AnomalyModel`: `forward(x)` takes the [0, 1] NCHW tensor that
`edgeano.data.Preprocess` makes and returns {"score": (N,), "anomaly_map": (N, H, W) optional};
that forward is exactly what `edgeano export` puts in the ONNX graph.
"""

from edgeano.models.registry import create, model_names, register

__all__ = ["create", "model_names", "register"]
