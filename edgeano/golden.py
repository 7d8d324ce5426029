"""The golden reference: a few real training images and a defective copy of each (synthetic defects,
edgeano.evaluation.synthetic), preprocessed, with PyTorch's outputs for them, written by `edgeano
export` beside the ONNX (`best.onnx` -> `best.golden.npz`), so a device without torch can check any
artifact against PyTorch (`edgeano verify`, `pytest -m tensorrt`).

    write_golden("best.onnx", torch_engine, frames, source="8 images from data/")   # export, torch side
    result, info = verify_artifact("best.fp16.engine")                              # device, torch-free

Every artifact points to its golden file: the FP32 metadata names it (`"golden": "best.golden.npz"`,
relative to the artifact's folder), and the FP16/INT8 ONNX and engine sidecars copy that metadata.
An engine built elsewhere (the engine cache) also finds it beside the ONNX its sidecar names.

Why the defective copies: on good images alone every score sits far below the threshold, so an
engine that outputs zeros stays within INT8's threshold-scaled bound (thr_rel 0.25: a good image's
score is ~1/8 of the threshold). With large defects beside them the reference scores reach the
threshold's scale, and the same bound fails such an engine (tests/test_verify.py).

File: numpy .npz (no pickles): `input` (N, C, H, W) float32, `output/<name>` per output, `labels`
(N,) 0 good / 1 synthetic defect (schema 2; schema-1 files have good images only), `meta` (a JSON
string: model, training fingerprint, where the images came from, torch version, ...).
Torch-free: writing takes any Engine-like reference (`.preprocess`, `.infer`, `.meta`).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
from edgeano.fileio import write_bytes
from edgeano.runtime.trt_build import artifact_base  # the engine naming rule's base: best.fp16.onnx -> best

SUFFIX = ".golden.npz"
N_IMAGES = 8  # good images (+ 8 defective copies): enough for per-output metrics, small beside the model
SCHEMA = 2
DEFECT_SEED = 0  # the defective copies are the same for every export of the same images
# Large defects (10-30 % of the image, not the 0.1-4 % of the detection estimate): they are there to
# move the score onto the threshold's scale (texture fixture, 64 px: good 3-5, threshold 18, these
# 5-23), not to measure detection.
DEFECT_AREA = (0.1, 0.3)
IDENTITY_KEYS = ("model", "train_fingerprint", "source_checkpoint")  # golden and artifact must agree on these


@dataclass
class Golden:
    path: Path
    inputs: np.ndarray
    outputs: Dict[str, np.ndarray]
    meta: Dict
    labels: Optional[np.ndarray] = None  # 0 good, 1 synthetic defect; None in a schema-1 file


def golden_name(onnx_path) -> str:
    return artifact_base(onnx_path) + SUFFIX


def write_golden(onnx_path, reference, frames: Sequence[np.ndarray], source: str = "", n: int = N_IMAGES) -> Path:
    """Up to `n` of `frames` (good images) and a synthetic-defect copy of each, preprocessed with
    the reference's own Preprocess; run the reference (PyTorch) on them, write <base>.golden.npz
    beside `onnx_path`. Returns the path."""
    from edgeano.evaluation.synthetic import synthesize

    frames = list(frames)[:n]
    if not frames:
        raise EdgeanoError("no images for the golden reference", EXIT_USAGE)
    defects = synthesize(frames, seed=DEFECT_SEED, area_range=DEFECT_AREA).images
    x = reference.preprocess.batch(frames + defects)
    labels = np.array([0] * len(frames) + [1] * len(defects), np.int8)
    outputs = reference.infer(x)
    meta = {"schema": SCHEMA, "images": len(frames) + len(defects), "good": len(frames), "synthetic_defects": len(defects),
            "source": source, "reference": getattr(reference, "name", "pytorch"),
            "onnx": Path(onnx_path).name, "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **{k: reference.meta[k] for k in IDENTITY_KEYS if k in reference.meta}}
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:  # a reference that is not PyTorch
        pass
    arrays = {"input": np.ascontiguousarray(x, np.float32), "labels": labels, "meta": np.array(json.dumps(meta, sort_keys=True))}
    arrays.update({f"output/{k}": np.asarray(v, np.float32) for k, v in outputs.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(Path(onnx_path).with_name(golden_name(onnx_path)), buf.getvalue())


def read_golden(path) -> Golden:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            inputs = z["input"].astype(np.float32)
            outputs = {k[len("output/"):]: z[k] for k in z.files if k.startswith("output/")}
            labels = z["labels"].astype(np.int64) if "labels" in z.files else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise EdgeanoError(f"{path}: not a readable golden file ({type(e).__name__}); re-export with `edgeano export`", EXIT_USAGE)
    if (not isinstance(meta, dict) or meta.get("schema", 0) > SCHEMA or not outputs or inputs.ndim != 4
            or (labels is not None and labels.shape != (inputs.shape[0],))):
        raise EdgeanoError(f"{path}: not an edgeano golden file this version reads; re-export with `edgeano export`", EXIT_USAGE)
    return Golden(path, inputs, outputs, meta, labels)


def golden_candidates(artifact, meta: Dict) -> List[Path]:
    """Where the golden file of `artifact` may be, in order: the name its metadata gives, beside the
    artifact, then beside the ONNX an engine's sidecar names; then <base>.golden.npz in both places."""
    artifact = Path(artifact)
    folders = [artifact.parent]
    onnx = (meta.get("tensorrt") or {}).get("onnx") if isinstance(meta.get("tensorrt"), dict) else None
    if onnx:
        folders.append(Path(onnx).parent)
    names = [Path(str(meta["golden"])).name] if meta.get("golden") else []  # a name, never a path out of the folder
    names += [golden_name(artifact)] + ([golden_name(onnx)] if onnx else [])
    out: List[Path] = []
    for name in names:
        for folder in folders:
            if folder / name not in out:
                out.append(folder / name)
    return out


def find_golden(artifact, meta: Dict) -> Path:
    for p in golden_candidates(artifact, meta):
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in golden_candidates(artifact, meta)[:3])
    raise EdgeanoError(f"{artifact}: no golden reference found (looked for {tried}); `edgeano export` writes it beside "
                       "the ONNX: copy it with the artifact, or pass --golden FILE", EXIT_USAGE)


def check_belongs(golden: Golden, meta: Dict, artifact, input_shape: Tuple[int, ...]) -> None:
    """The golden file and the artifact come from the same model (and it takes these inputs)."""
    for key in IDENTITY_KEYS:
        if key in golden.meta and key in meta and golden.meta[key] != meta[key]:
            raise EdgeanoError(f"{golden.path} belongs to another model ({key} {golden.meta[key]!r}, "
                               f"{artifact} has {meta[key]!r})", EXIT_USAGE)
    if tuple(golden.inputs.shape[1:]) != tuple(input_shape):
        raise EdgeanoError(f"{golden.path}: inputs are {tuple(golden.inputs.shape[1:])}, {artifact} takes {tuple(input_shape)}",
                           EXIT_USAGE)


def verify_artifact(path, golden_path=None, backend: str = "auto", **runner_kw):
    """Run `path` (any ONNX precision or a TensorRT engine) on its golden inputs and compare with
    PyTorch's outputs under the parity tolerances of its backend and precision.
    Returns (edgeano.compare.Comparison, info dict: backend, precision, golden path, images)."""
    from edgeano.compare import compare, tolerances_for
    from edgeano.runtime.engine import Engine

    with Engine.load(path, backend=backend, **runner_kw) as engine:
        golden = read_golden(golden_path or find_golden(path, engine.meta))
        check_belongs(golden, engine.meta, path, engine.preprocess.input_shape)
        precision = str(engine.meta.get("precision", "fp32"))
        try:
            tolerances = tolerances_for(engine.name, precision)
        except KeyError as e:
            raise EdgeanoError(f"{path}: {e.args[0]}", EXIT_ERROR)
        outputs = engine.infer(golden.inputs)
        threshold = engine.threshold if np.isfinite(engine.threshold) else None  # JSON-safe
        info = {"artifact": str(path), "backend": engine.name, "precision": precision, "golden": str(golden.path),
                "threshold": threshold,
                "images": int(golden.inputs.shape[0]), "source": golden.meta.get("source", ""),
                "synthetic_defects": 0 if golden.labels is None else int(golden.labels.sum())}
    # No labels: on 16 images a model that barely separates its golden defects ranks them by noise
    # (GANomaly fixture, INT8: Spearman 0.82, AUROC drop 0.08 with thr_rel 0.011), so the rank
    # metrics are shown, not enforced; the defects' scores hold thr_rel to the threshold's scale.
    return compare(outputs, golden.outputs, tolerances, threshold=threshold), info


def describe(result, info: Dict) -> List[str]:
    """The lines `edgeano verify` prints: a header, then one line per output."""
    n, bad = info["images"], info.get("synthetic_defects", 0)
    what = f"{n - bad} good + {bad} synthetic-defect golden images" if bad else f"{n} golden image(s)"
    head = f"verify {info['artifact']} ({info['backend']}) vs PyTorch on {what} from {Path(info['golden']).name}"
    return [head] + ["  " + line for line in result.lines()]


def report(result, info: Dict) -> Dict:
    """JSON-able record of one verification (device_check.sh collects these)."""
    return {**info, "passed": result.passed, "failures": result.failures,
            "outputs": {name: {"metrics": r.metrics, "bounds": r.bounds, "failed": r.failed}
                        for name, r in result.outputs.items()}}

