"""Export formats beyond the ONNX itself: `--format triton` (a model repository, export/triton.py)
and `--format deepstream` (an nvinfer config, export/deepstream.py). The pipeline exports the ONNX
as usual (with a dynamic batch, which both servers batch on), then hands the result to one of these.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

from edgeano.errors import EXIT_USAGE, EdgeanoError

FORMATS = ("onnx", "triton", "deepstream")
DEFAULT_BATCH = {"triton": 8, "deepstream": 1}
report = logging.getLogger(__name__)  # what was written; the CLI prints it


def check_format(fmt: str, out: Optional[str], ckpt_path: Path, name: Optional[str], max_batch: Optional[int]) -> Optional[Path]:
    """Validate the format flags before any work; the output folder for triton/deepstream, else None."""
    if fmt not in FORMATS:
        raise EdgeanoError(f"--format {fmt!r}: use {', '.join(FORMATS)}", EXIT_USAGE)
    if fmt == "onnx":
        if name or max_batch is not None:
            raise EdgeanoError("--name and --max-batch are for --format triton or deepstream", EXIT_USAGE)
        return None
    folder = Path(out) if out else ckpt_path.parent / fmt
    if folder.suffix == ".onnx" or (folder.exists() and not folder.is_dir()):
        raise EdgeanoError(f"--out {folder}: with --format {fmt}, --out is a folder (e.g. --out {fmt}_repo/)", EXIT_USAGE)
    if max_batch is not None and not 1 <= max_batch <= 1024:
        raise EdgeanoError(f"--max-batch {max_batch}: use 1..1024", EXIT_USAGE)
    if name is not None:
        from edgeano.serve import NAME_RE  # the same rule edgeano serve applies

        if fmt != "triton":
            raise EdgeanoError("--name names the model in a Triton repository (--format triton)", EXIT_USAGE)
        if not NAME_RE.match(name):
            raise EdgeanoError(f"--name {name!r}: use letters, digits, '_', '.' and '-' (Triton's model names)", EXIT_USAGE)
    return folder


def _matching_engine(onnx_path: Path, precision: str) -> Optional[Path]:
    """The TensorRT engine the export just built from this ONNX (the one naming rule,
    trt_build.default_engine_path), if any and if its sidecar names this ONNX's sha256."""
    from edgeano.runtime.trt_build import default_engine_path

    engine = default_engine_path(onnx_path, precision)
    if not engine.is_file():
        return None
    from edgeano.fileio import sha256_file
    from edgeano.runtime.tensorrt import read_sidecar

    try:
        side = read_sidecar(engine)
    except EdgeanoError:
        return None
    return engine if side["tensorrt"].get("onnx_sha256") == sha256_file(onnx_path) else None


def write_format(fmt: str, folder: Path, outputs: Dict[str, Path], name: Optional[str], max_batch: Optional[int]) -> Path:
    """Put the most compressed artifact exported (INT8 > FP16 > FP32) into the format's layout."""
    precision = next(p for p in ("int8", "fp16", "fp32") if p in outputs)
    artifact = outputs[precision]
    batch = max_batch or DEFAULT_BATCH[fmt]
    engine = _matching_engine(artifact, precision)
    if fmt == "triton":
        from edgeano.export.triton import write_repository

        cfg = write_repository(engine or artifact, folder, name=name, max_batch=batch)
        report.info(f"wrote {cfg.parent} (Triton model repository {folder}: config.pbtxt, 1/{'model.plan' if engine else 'model.onnx'})")
        report.info(f"  a stock Triton serves it: tritonserver --model-repository {folder}")
        return cfg
    from edgeano.export.deepstream import write_deepstream
    from edgeano.runtime.tensorrt import read_sidecar

    usable = engine if engine and int(read_sidecar(engine)["tensorrt"].get("max_batch", 1)) >= batch else None
    cfg = write_deepstream(artifact, folder, batch=batch, engine=usable)
    report.info(f"wrote {cfg} (Gst-nvinfer config; model.onnx{', model.engine' if usable else ''} and edgeano.json beside it)")
    report.info(f"  on the device: python3 jetson/deepstream/edgeano_deepstream.py --config {cfg} --source file:///path/clip.mp4 --events events.jsonl")
    return cfg
