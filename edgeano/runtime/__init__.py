"""Torch-free inference: `Engine` (artifact -> scores/labels/maps for BGR frames) over runners.

A runner does one thing: run the network on an NCHW float32 batch and return named outputs
(`infer(x) -> {"score": (N,), "anomaly_map": (N, H, W)}`). `Engine` adds what the artifact's
metadata says: preprocessing, batching and the threshold.
"""

from edgeano.runtime.engine import Engine, Result

__all__ = ["Engine", "Result"]
