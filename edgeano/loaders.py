"""Resolve the CLI's MODEL argument and open it as an Engine.

MODEL is a path (`.pt` checkpoint, `.onnx`, `.engine`) or a model name, which means the newest
`runs/<name>/*/weights/best.pt`. Checkpoints need torch; ONNX and engines do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.runtime.engine import Engine

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def resolve_model(model: str, runs: str = "runs", artifact: str = "weights/best.pt") -> Path:
    p = Path(model)
    if p.suffix:
        if p.is_dir():
            raise EdgeanoError(f"{p} is a folder, not a model file (.onnx, .engine or .pt)")
        if not p.exists():
            raise EdgeanoError(f"model file not found: {p}")
        return p
    if p.exists() and p.is_dir():  # a run folder
        cand = p / artifact
        if cand.exists():
            return cand
        raise EdgeanoError(f"{p} is a folder without {artifact}")
    runs_dir = Path(runs) / model
    found = sorted(runs_dir.glob(f"*/{artifact}"), key=lambda f: f.stat().st_mtime)
    if not found:
        from edgeano.train import TRAINERS  # model names; importing it does not import torch

        if model not in TRAINERS:
            raise EdgeanoError(f"{model!r} is neither a model file nor a model name: pass a .onnx, .engine or .pt path, "
                               f"or one of {', '.join(TRAINERS)} to take the newest run under {runs}/")
        raise EdgeanoError(
            f"no trained '{model}' model: {runs_dir}/*/{artifact} does not exist; "
            f"train one with `edgeano train --model {model} --data DIR` or pass a file path"
        )
    return found[-1]


def is_checkpoint(path: Path) -> bool:
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def open_engine(model: str, backend: str = "auto", threshold: Optional[float] = None, runs: str = "runs",
                server: Optional[str] = None, **kw) -> Engine:
    """Any MODEL -> Engine. Only a checkpoint imports torch (and needs edgeano[train]). With `server`
    (a Triton server's URL), MODEL is the served model's name and nothing local is opened."""
    if server:
        from edgeano.runtime.triton import model_url

        if kw:
            raise EdgeanoError(f"--{next(iter(kw))} tunes a local runner; with --server the server runs the model")
        return Engine.load(model_url(server, model), backend=backend, threshold=threshold)
    if backend == "triton":
        raise EdgeanoError("--backend triton scores through a server: add --server URL (e.g. --server http://localhost:8000)", EXIT_USAGE)
    path = resolve_model(model, runs)
    if is_checkpoint(path):
        try:
            from edgeano.models.runner import engine_from_checkpoint
        except ImportError as e:
            raise EdgeanoError(f"{path} is a PyTorch checkpoint and needs torch ({e.name} missing): pip install 'edgeano[train]', or pass the exported .onnx")
        threads = kw.pop("threads", None)
        if backend == "openvino" or kw.pop("precision", "fp32") != "fp32":
            raise EdgeanoError(f"{path} is a PyTorch checkpoint: the OpenVINO runner needs the exported .onnx "
                               f"(edgeano export --model {path})", EXIT_USAGE)
        if threads:
            import torch

            torch.set_num_threads(int(threads))  # process-wide in PyTorch: the eager runner has no setting of its own
        return engine_from_checkpoint(path, threshold=threshold, **kw)
    return Engine.load(path, backend=backend, threshold=threshold, **kw)
