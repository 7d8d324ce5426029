"""`edgeano export`: checkpoint -> FP32 ONNX (+ FP16 / INT8 QDQ) -> parity checks against
PyTorch -> TensorRT engine where TensorRT and a GPU are present. Each step is its own function."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgeano.compare import TOLERANCES
from edgeano.data.datasets import good_frames, load_dataset
from edgeano.data.synthetic import texture_frames
from edgeano.errors import EXIT_ERROR, EdgeanoError
from edgeano.export.formats import check_format, write_format
from edgeano.export.onnx_export import compare_engines, export_onnx
from edgeano.fileio import atomic_path
from edgeano.golden import N_IMAGES, golden_name, write_golden
from edgeano.loaders import is_checkpoint, resolve_model

report = logging.getLogger(__name__)  # progress and results; the CLI prints them
FP32_SCORE_RTOL = TOLERANCES[("onnxruntime", "fp32")]["score"]["max_rel"]  # the parity table's ONNX Runtime FP32 bound


def _run_data(ckpt_path: Path) -> Optional[str]:
    """The training folder a run recorded in runs/<model>/<name>/config.json, if any."""
    cfg = ckpt_path.parent.parent / "config.json"
    try:
        return json.loads(cfg.read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None


def parity_frames(ckpt_path: Path, data: Optional[str], n: int = 16) -> Tuple[List[np.ndarray], str]:
    """Real images for the parity check: --data, else the run's training folder, else crops of
    the bundled texture photo."""
    for root in (data, _run_data(ckpt_path)):
        if root and Path(root).is_dir():
            frames = good_frames(root, n)
            if frames:
                return frames, f"{len(frames)} images from {root}"
    return texture_frames(n, 160), f"{n} crops of the bundled texture photo (pass --data for your own images)"


def check_parity(ref, onnx_path: Path, frames, label: str, rtol: Optional[float]) -> Dict:
    from edgeano.runtime.engine import Engine

    with Engine.load(onnx_path, backend="onnxruntime") as eng:
        d = compare_engines(ref, eng, frames)
    msg = f"  {label} vs PyTorch on {d['n']} images: score max rel diff {d['score_max_rel']:.2e} (abs {d['score_max_abs']:.3g})"
    if "map_max_abs" in d:
        msg += f", map max abs diff {d['map_max_abs']:.2e} ({d['map_max_rel_to_peak']:.2e} of peak)"
    report.info(msg)
    if rtol is not None and not d["score_max_rel"] <= rtol:
        raise EdgeanoError(f"{label} export of {onnx_path.name}: ONNX Runtime differs from PyTorch by {d['score_max_rel']:.2e} > {rtol:g}; "
                           "not written (please report this model)", EXIT_ERROR)
    return d


def maybe_build_engines(onnx_paths: Dict[str, Path]) -> None:
    """Build TensorRT engines where TensorRT and a GPU are present; else say how to on the device."""
    from edgeano.runtime.tensorrt import tensorrt_available  # imports TensorRT lazily: safe anywhere

    ok, why = tensorrt_available()
    if not ok:
        report.info(f"TensorRT: not building here ({why}). On the device run:")
        for prec, p in onnx_paths.items():
            report.info(f"  edgeano build {p} --precision {prec}")
        return
    from edgeano.runtime.trt_build import build_engine, default_engine_path

    for prec, p in onnx_paths.items():
        engine = default_engine_path(p, prec)
        build_engine(p, engine, precision=prec)
        report.info(f"wrote {engine} (TensorRT {prec})")


def check_export_flags(model: str, out: Optional[str], int8: bool, data: Optional[str], num: int, method: str, opset: int,
                       runs: str = "runs", fmt: str = "onnx", name: Optional[str] = None,
                       max_batch: Optional[int] = None) -> Tuple[Path, Path, Optional[Path]]:
    """Every flag, before anything is loaded or written (fail fast, Ultralytics-style): returns
    (checkpoint, FP32 output path, the triton/deepstream folder or None)."""
    from edgeano.fileio import check_output_dir, check_output_file

    ckpt_path = resolve_model(model, runs)
    if not is_checkpoint(ckpt_path):
        raise EdgeanoError(f"export needs a PyTorch checkpoint (.pt), got {ckpt_path}; for an existing ONNX use `edgeano calibrate` or `edgeano build`")
    if not 11 <= opset <= 21:
        raise EdgeanoError(f"--opset {opset} is out of range: use 11..21 (17 for TensorRT 8.6)")
    fmt_dir = check_format(fmt, out, ckpt_path, name, max_batch)
    if fmt_dir is not None:  # --out is the format's folder; the ONNX goes beside the checkpoint
        check_output_dir(fmt_dir, "--out")
        out = None
    if int8 and not data:
        raise EdgeanoError("--int8 needs --data DIR with normal images to calibrate on (e.g. the training folder)")
    if data and not Path(data).is_dir():
        raise EdgeanoError(f"--data folder not found: {data}")
    if int8:
        from edgeano.calibration.quantize import METHODS

        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise EdgeanoError(f"--num must be >= 1 (normal images to calibrate on), got {num}")
        if method not in METHODS:
            raise EdgeanoError(f"unknown calibration method {method!r}: use {', '.join(METHODS)}")
        if not load_dataset(data).train:
            raise EdgeanoError(f"no normal images in {data}: --int8 calibrates on train/good (MVTec layout) or a folder of good images")
    out_path = check_output_file(Path(out) if out else ckpt_path.with_suffix(".onnx"), "--out", (".onnx",))
    return ckpt_path, out_path, fmt_dir


def run_export(model: str, opset: int, dynamic_batch: bool, out: Optional[str], fp16: bool, int8: bool,
               data: Optional[str], num: int, method: str, runs: str = "runs", build: bool = True,
               fmt: str = "onnx", name: Optional[str] = None, max_batch: Optional[int] = None) -> Dict[str, Path]:
    """Each output is written to a temp file beside it, checked against PyTorch there, and only
    then renamed over the previous file: a bad checkpoint, a failed check or Ctrl-C leaves the
    previous good model in place, and two exports racing on one --out each check their own file."""
    ckpt_path, out_path, fmt_dir = check_export_flags(model, out, int8, data, num, method, opset, runs, fmt, name, max_batch)
    if fmt_dir is not None:  # triton and deepstream serve batches
        dynamic_batch = True

    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
    from edgeano.models.runner import TorchRunner
    from edgeano.runtime.engine import Engine

    model_obj, ckpt = load_checkpoint(ckpt_path)
    meta = checkpoint_metadata(model_obj, ckpt, source_checkpoint=ckpt_path.name, golden=golden_name(out_path))
    frames, where = parity_frames(ckpt_path, data)
    ref = Engine(TorchRunner(model_obj), meta)
    with atomic_path(out_path, suffix=".tmp.onnx") as staged:
        export_onnx(model_obj, staged, meta, opset=opset, dynamic_batch=dynamic_batch)
        report.info(f"checking the FP32 export against PyTorch on {where}")
        check_parity(ref, staged, frames, "FP32", FP32_SCORE_RTOL)
    report.info(f"wrote {out_path} (FP32, opset {opset}{', dynamic batch' if dynamic_batch else ''})")
    n = min(len(frames), N_IMAGES)
    report.info(f"wrote {write_golden(out_path, ref, frames, where)} (PyTorch's outputs on {n} images and a synthetic-defect "
                f"copy of each: `edgeano verify`)")
    outputs = {"fp32": out_path}
    if fp16:
        outputs["fp16"] = _export_fp16(out_path, ref, frames)
    if int8:
        from edgeano.calibration.quantize import calibrate_onnx

        p8 = out_path.with_suffix(".int8.onnx")
        calibrate_onnx(out_path, p8, Path(data), num=num, method=method)
        report.info(f"wrote {p8} (INT8 QDQ)")
        check_parity(ref, p8, frames, "INT8", None)
        outputs["int8"] = p8
    if build:
        maybe_build_engines({k: v for k, v in outputs.items() if k != "fp32" or len(outputs) == 1})
    if fmt_dir is not None:
        outputs[fmt] = write_format(fmt, fmt_dir, outputs, name, max_batch)
    return outputs


def _export_fp16(fp32_path: Path, ref, frames) -> Path:
    from edgeano.export.fp16 import to_fp16

    p16 = fp32_path.with_suffix(".fp16.onnx")
    with atomic_path(p16, suffix=".tmp.onnx") as staged:
        rep = to_fp16(fp32_path, staged, frames)
        by_reason: Dict[str, List[str]] = {}
        for node, why in rep.get("kept_fp32", []):
            by_reason.setdefault(why, []).append(node)
        for why, nodes in by_reason.items():
            shown = ", ".join(nodes[:8]) + (f", ... ({len(nodes)} in all)" if len(nodes) > 8 else "")
            report.info(f"  kept in FP32, {why}: {shown}")
        check_parity(ref, staged, frames, "FP16", None)
    report.info(f"wrote {p16} (FP16, inputs/outputs float32)")
    return p16
