"""How much INT8 changed the scores, measured the way a user sees them: both artifacts loaded
with `Engine.load` (ONNX Runtime), scored on the same frames.

Threshold policy: the INT8 artifact keeps the FP32 threshold (set on held-out normal images in
training; re-deriving it from calibration images would tune it on the very images the ranges
came from). The report says how many normal calibration images change label under it, so a
user sees at once whether the kept threshold still fits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgeano.compare import compare_output
from edgeano.errors import EdgeanoError
from edgeano.evaluation.metrics import auroc
from edgeano.runtime.engine import Engine

BATCH = 32


def score_frames(engine: Engine, frames: Sequence[np.ndarray], desc: str = "", progress: bool = True):
    """Scores (and maps, when the model has them) of `frames`, BATCH at a time with a bar."""
    from tqdm import tqdm

    scores: List[np.ndarray] = []
    maps: List[np.ndarray] = []
    with tqdm(total=len(frames), desc=desc, unit="img", file=sys.stderr, leave=False, disable=not progress) as bar:
        for i in range(0, len(frames), BATCH):
            res = engine.score(frames[i : i + BATCH])
            scores.append(res.scores)
            if res.maps is not None:
                maps.append(res.maps)
            bar.update(len(res))
    return np.concatenate(scores), (np.concatenate(maps) if maps else None)


def agreement(ref: np.ndarray, got: np.ndarray) -> Dict[str, float]:
    """Pearson and Spearman correlation, largest absolute and relative score difference (edgeano.compare)."""
    m = compare_output("score", np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)).metrics
    return {"n": int(np.asarray(ref).size), "pearson": m.get("pearson", float("nan")), "spearman": m.get("spearman", float("nan")),
            "max_abs_diff": m.get("max_abs", float("inf")), "max_rel_diff": m.get("max_rel", float("inf"))}


def map_agreement(ref: Optional[np.ndarray], got: Optional[np.ndarray]) -> Dict[str, float]:
    """How alike the two artifacts' anomaly maps are: correlation over every pixel, largest difference."""
    if ref is None or got is None:
        return {}
    m = compare_output("anomaly_map", got, ref).metrics
    return {"map_pearson": m.get("pearson", float("nan")), "map_max_abs_diff": m.get("max_abs", float("inf")),
            "map_max_abs_diff_rel_to_peak": m.get("peak_rel", float("inf"))}


def pixel_agreement(items, size_hw, ref_maps: Optional[np.ndarray], got_maps: Optional[np.ndarray]) -> Dict[str, float]:
    """Pixel AUROC of both artifacts' maps against the ground-truth masks, and the drop in points."""
    if ref_maps is None or got_maps is None or not any(t.mask is not None for t in items):
        return {}
    import cv2

    from edgeano.evaluation.metrics import pixel_auroc
    from edgeano.evaluation.synthetic import resize_mask

    masks = np.zeros(ref_maps.shape, np.uint8)
    for k, t in enumerate(items):
        m = cv2.imread(str(t.mask), cv2.IMREAD_GRAYSCALE) if t.mask is not None else None
        if m is not None:
            masks[k] = resize_mask(m > 127, size_hw)
    a, b = pixel_auroc(masks, ref_maps), pixel_auroc(masks, got_maps)
    return {"pixel_auroc_fp32": a, "pixel_auroc_int8": b, "pixel_auroc_drop_points": (a - b) * 100.0}


def build_report(fp32_path: Path, int8_path: Path, normal_frames: Sequence[np.ndarray], eval_dir=None,
                 progress: bool = True) -> Dict:
    """Compare the two artifacts on the calibration (normal) frames and, with `eval_dir`, on its test set."""
    from edgeano.calibration.reader import load_frames

    # ONNX Runtime by name: the automatic backend would compare TensorRT with TensorRT on a device
    fp32, int8 = Engine.load(fp32_path, backend="onnxruntime"), Engine.load(int8_path, backend="onnxruntime")
    try:
        thr = fp32.threshold
        a, amap = score_frames(fp32, normal_frames, "scoring fp32", progress)
        b, bmap = score_frames(int8, normal_frames, "scoring int8", progress)
        normal = {**agreement(a, b), **map_agreement(amap, bmap)}
        normal["threshold"] = thr
        normal["flagged_fp32"] = int((a >= thr).sum())
        normal["flagged_int8"] = int((b >= thr).sum())
        normal["label_flips"] = int(((a >= thr) != (b >= thr)).sum())
        report: Dict = {"threshold_policy": "kept the FP32 threshold; label_flips counts normal calibration images "
                                            "whose OK/NG label differs between FP32 and INT8 under it",
                        "normal": normal}
        if eval_dir is not None:
            from edgeano.data.datasets import load_dataset

            items = load_dataset(eval_dir, need_test=True).test
            frames, labels, kept = [], [], []
            for item in items:  # keep labels aligned with the frames that decode
                f = load_frames([item.path], "test images")
                if f:
                    frames.append(f[0])
                    labels.append(item.label)
                    kept.append(item)
            if not frames:
                raise EdgeanoError(f"none of the {len(items)} test images in {eval_dir} could be decoded")
            labels = np.asarray(labels)
            ea, eamap = score_frames(fp32, frames, "eval fp32", progress)
            eb, ebmap = score_frames(int8, frames, "eval int8", progress)
            au_a, au_b = auroc(labels, ea), auroc(labels, eb)
            report["eval"] = {
                "data": str(eval_dir), "n_normal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum()),
                "auroc_fp32": au_a, "auroc_int8": au_b, "auroc_drop_points": (au_a - au_b) * 100.0,
                **agreement(ea, eb), **map_agreement(eamap, ebmap), **pixel_agreement(kept, fp32.preprocess.size, eamap, ebmap),
            }
        return report
    finally:
        fp32.close()
        int8.close()


def print_report(r: Dict) -> None:
    n = r["normal"]
    cal = r["calibration"]
    print(f"INT8 QDQ written: {r['int8']}  ({cal['method']}, {cal['images']} normal images, {r['calibration_seconds']} s)")
    q = r["qdq"]
    print(f"  INT8 convolutions: {q['convolutions_int8']}/{q['convolutions']}; kept float: {len(cal['excluded_nodes'])} head nodes "
          f"({', '.join(cal['excluded_nodes'][:6])}{', ...' if len(cal['excluded_nodes']) > 6 else ''})")
    print(f"    why: {cal['excluded_reason']}")
    if r.get("float_nodes"):
        print(f"  mixed precision: {len(r['float_nodes'])} nodes at stride <= {r['float_stride']} kept float "
              f"(--float-stride {r['float_stride']}; 0 = all INT8)")
    if r.get("bias_correction"):
        print(f"  bias correction: the mean INT8 shift of {len(r['bias_correction'])} tensors entering the head, "
              f"measured on the calibration images, is added back in float")
    print(f"  vs FP32 on {n['n']} normal images: pearson {n['pearson']:.4f}, spearman {n['spearman']:.4f}, "
          f"max |diff| {n['max_abs_diff']:.4g} (rel {n['max_rel_diff']:.3g})")
    print(f"  threshold {n['threshold']:.4g} kept from FP32: {n['label_flips']} of {n['n']} normal images change label "
          f"(NG: fp32 {n['flagged_fp32']}, int8 {n['flagged_int8']})")
    if "map_pearson" in n:
        print(f"  anomaly maps vs FP32 on the normal images: pearson {n['map_pearson']:.4f}, "
              f"max |diff| {n['map_max_abs_diff']:.3g} ({n['map_max_abs_diff_rel_to_peak']:.3g} of the peak)")
    if "eval" in r:
        e = r["eval"]
        print(f"  image AUROC on {e['n_normal']}+{e['n_anomalous']} test images: fp32 {e['auroc_fp32']:.4f}, "
              f"int8 {e['auroc_int8']:.4f}, drop {e['auroc_drop_points']:+.2f} points; spearman {e['spearman']:.4f}")
        if "pixel_auroc_fp32" in e:
            print(f"  pixel AUROC: fp32 {e['pixel_auroc_fp32']:.4f}, int8 {e['pixel_auroc_int8']:.4f}, "
                  f"drop {e['pixel_auroc_drop_points']:+.2f} points; map pearson {e['map_pearson']:.4f}")
