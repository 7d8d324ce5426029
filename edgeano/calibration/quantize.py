"""FP32 edgeano ONNX -> INT8 QDQ ONNX, calibrated on normal images.

Precision is decided here, in the ONNX file, so one calibrated artifact serves every TensorRT
version (8.6, 10.x, 11: "explicit quantization") and ONNX Runtime; the engine is built where it
runs. The form TensorRT accepts everywhere, and how we get it from quantize_static:
- QDQ pairs, never QLinear* ops (QuantFormat.QDQ), opset kept as exported (17, >= 13);
- symmetric INT8 activations (zero point 0: TensorRT is symmetric-only): ActivationSymmetric;
- per-channel symmetric INT8 weights ([-127, 127]): per_channel + WeightSymmetric;
- weights kept FP32 behind a Q/DQ pair (AddQDQPairToWeight): TensorRT 8.x quantizes weights
  itself from the Q scale; 10.x/11 accept this form too;
- float biases (QuantizeBias=False): TensorRT has no INT32 DequantizeLinear;
- one Q/DQ pair per consumer (DedicatedQDQPair), the layout NVIDIA's own QAT exports have;
- the scoring head and the input layer (Normalize, contrast step) stay float (see graph.py), and
  `tensorrt_problems` checks the result;
- the systematic INT8 shift of the tensors entering the head is measured on the calibration
  images and added back in float (bias.py): anomaly scores are distances, and a constant
  shift of the features moves every one of them;
- optionally (per model, FLOAT_STRIDE) the high-resolution stem stays float too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

from edgeano.artifact import load_onnx, read_onnx_metadata, set_onnx_metadata
from edgeano.calibration.bias import apply_bias_correction, head_input_tensors, measure_bias
from edgeano.calibration.graph import (HEAD_REASON, drop_unused_opsets, head_nodes, high_resolution_nodes, input_layer_nodes,
                                      name_nodes, qdq_summary, tensorrt_problems, unquantize_head_inputs)
from edgeano.calibration.reader import RECOMMENDED_MIN, ImageCalibrationReader, calibration_paths, load_frames
from edgeano.calibration.report import build_report, print_report
from edgeano.data.datasets import load_dataset
from edgeano.errors import EXIT_ERROR, EdgeanoError
from edgeano.fileio import check_output_file, write_bytes, write_json

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_NUM = 512
PERCENTILE = 99.999  # of |activation|: clips the rare outliers that would stretch the INT8 step
CHUNK = 16  # images per range-collection pass: bounds calibration memory to one chunk's activations
# Mixed precision: nodes at stride <= N (the high-resolution stem) stay float, per model.
# Measured on MTD (docs/benchmarks/int8.md), Gaussian model, 512 calibration images, bias
# correction on: every convolution INT8 loses 2.2 AUROC points (default levels 4-7, avg+max
# pooling) and 3.5 (all levels, avg); with stride <= 4 float (23% of Lite0's MACs) 0.13 and 0.01.
# Its Mahalanobis distances see INT8 error from the stem that later stages do not wash out.
# EGBAD and the AEs keep every convolution INT8 (0.08-0.44 points, docs/benchmarks/models.md).
# AnoGAN's izi_f score compares discriminator features of x and G(E(x)): fully INT8 it lost 1.27
# points (0.7306 -> 0.7180), with the 16x16 and 32x32 layers float 0.10 (-> 0.7297), at 3.75 vs
# 3.88 ms. GANomaly compares two latent codes: the model the CLI defaults train now (best.pt by the
# synthetic-defect estimate) lost 2.36 points fully INT8 (0.9125 -> 0.8889; an earlier model < 0.1),
# 0.52 with the 16x16 and 32x32 layers float; chosen on the label-free agreement with FP32 on the
# 512 normal calibration images (Pearson 0.909 -> 0.991, Spearman 0.879 -> 0.987).
FLOAT_STRIDE = {"gaussian": 4, "anogan": 2, "ganomaly": 2}


def default_output(src, target: str = "tensorrt") -> Path:
    src = Path(src)
    return src.with_name(f"{src.stem}.{'cpu.' if target == 'cpu' else ''}int8.onnx")


def report_path(dst) -> Path:
    dst = Path(dst)
    return dst.with_name(dst.name + ".report.json")


def validate_inputs(src, dst, data_dir, num: int, method: str, eval_dir=None) -> Dict:
    """Every check that needs no inference, so a bad flag fails in a second, not after calibration.
    Returns the source metadata."""
    if method not in METHODS:
        raise EdgeanoError(f"unknown calibration method {method!r}: use {', '.join(METHODS)}")
    if int(num) < 1:
        raise EdgeanoError(f"--num must be >= 1 (normal images to calibrate on), got {num}")
    src, dst = Path(src), Path(dst)
    if src.suffix.lower() != ".onnx":
        raise EdgeanoError(f"{src}: calibration takes the FP32 .onnx from `edgeano export`")
    meta = read_onnx_metadata(src)  # missing / not ONNX / not edgeano -> one line
    precision = meta.get("precision", "fp32")
    if precision != "fp32":
        raise EdgeanoError(f"{src} is already {precision}; calibrate the FP32 ONNX from `edgeano export`")
    if dst.resolve() == src.resolve():
        raise EdgeanoError(f"--out {dst} would overwrite the FP32 input; choose another path")
    check_output_file(dst, "--out", (".onnx",))
    check_output_file(report_path(dst), "--out (its report)")
    if not load_dataset(data_dir).train:
        raise EdgeanoError(f"no normal images in {data_dir}: calibration needs train/good (MVTec layout) or a folder of good images")
    if eval_dir is not None:
        load_dataset(eval_dir, need_test=True)
    return meta


def _calibrate_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def _stride(n: int, chunk: int = CHUNK) -> int:
    """Largest divisor of n not above `chunk` (quantize_static wants n % stride == 0)."""
    return max(d for d in range(1, min(chunk, n) + 1) if n % d == 0)


def calibrate_qdq(src: Path, frames, preprocess, method: str, progress: bool, float_stride: int, bias_correction: bool,
                  activation: str = "int8", extra: Optional[Dict] = None, reduce_range: bool = False):
    """What both INT8 forms share: pre-process, calibrate, QDQ with the head, the input layer and the
    stride <= float_stride layers kept float, head inputs un-quantized, bias correction. Returns the
    quantized model (not written) and what was done. activation: "int8" (symmetric, the TensorRT
    form) or "uint8" (the x86 CPU form, cpu_int8.py); extra: the form's quantize_static options."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgeano-calib-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # shape inference + ORT's basic (standard-op) optimisations, e.g. BN folding, constant folding
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        name_nodes(model)
        head = head_nodes(model)
        inputs = input_layer_nodes(model)  # see graph.py: the image the head compares with stays exact
        stem = [n for n in high_resolution_nodes(model, float_stride) if n not in inputs]  # mixed precision, see FLOAT_STRIDE
        onnx.save(model, str(pre))
        input_name = model.graph.input[0].name
        dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
        batch = dim0.dim_value if dim0.HasField("dim_value") and dim0.dim_value > 0 else 1
        reader = ImageCalibrationReader(frames, preprocess, input_name, batch=batch, progress=progress)
        options = {**(extra or {}), "CalibStridedMinMax": _stride(len(reader))}  # collect in chunks (any method), see reader
        if method == "percentile":
            options["CalibPercentile"] = PERCENTILE
        qpath = Path(tmp) / "int8.onnx"
        t0 = time.time()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_static logs advice at WARNING that is not for our users
        try:
            with contextlib.redirect_stdout(sys.stderr):  # its histogram calibrators print(): keep stdout ours
                quantize_static(str(pre), str(qpath), reader, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                                activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=head + inputs + stem,
                                calibrate_method=_calibrate_method(method), extra_options=options)
        finally:
            root.setLevel(level)
            reader.close()
        qmodel = onnx.load(str(qpath))
    rewired = unquantize_head_inputs(qmodel, head)
    corrected = []
    if bias_correction:
        corrected = apply_bias_correction(qmodel, head, measure_bias(model, qmodel, head_input_tensors(qmodel, head), frames,
                                                                     preprocess, batch, progress))
    seconds = time.time() - t0
    drop_unused_opsets(qmodel)
    return qmodel, {"excluded_nodes": head, "excluded_reason": HEAD_REASON, "float_nodes": stem, "float_stride": float_stride,
                    "input_layer_nodes": inputs, "head_inputs_kept_float": rewired, "bias_correction": corrected,
                    "qdq": qdq_summary(qmodel), "calibration_seconds": round(seconds, 1), "batch": batch}


def quantize_qdq(src: Path, dst: Path, frames, preprocess, method: str = "minmax", progress: bool = True,
                 float_stride: int = 0, bias_correction: bool = True) -> Dict:
    """The TensorRT form: symmetric INT8, Q/DQ pairs on weights, one pair per consumer, float biases.
    Writes `dst` (plain ONNX, metadata untouched) and returns what was done."""
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True,
             "QuantizeBias": False, "DedicatedQDQPair": True}
    qmodel, done = calibrate_qdq(src, frames, preprocess, method, progress, float_stride, bias_correction, "int8", extra)
    problems = tensorrt_problems(qmodel)
    if problems:  # our own invariant: a file TensorRT cannot parse must never be written
        raise EdgeanoError(f"INT8 graph is not TensorRT-compatible ({len(problems)} problems, e.g. {problems[0]}); please report this model", EXIT_ERROR)
    write_bytes(dst, qmodel.SerializeToString())
    return done


TARGETS = ("tensorrt", "cpu")  # the TensorRT form (this module) or the x86 CPU form (cpu_int8.py)


def calibrate_onnx(src: Path, dst: Optional[Path], data_dir: Path, num: int = DEFAULT_NUM, method: str = "minmax",
                   eval_dir: Optional[Path] = None, progress: bool = True, verbose: bool = True,
                   float_stride: Optional[int] = None, bias_correction: bool = True, target: str = "tensorrt") -> Dict:
    """Calibrate the FP32 edgeano ONNX `src` on up to `num` normal images of `data_dir` and write
    the INT8 QDQ ONNX `dst` (default `<stem>.int8.onnx`) plus `<dst>.report.json`. Returns the report.
    float_stride: keep layers at stride <= this in float (None: the model's FLOAT_STRIDE, 0: none).
    bias_correction=False only for ablations (docs/benchmarks/int8.md): it costs accuracy.
    target: "tensorrt" (QDQ for every TensorRT version) or "cpu" (edgeano.calibration.cpu_int8: the
    form ONNX Runtime and OpenVINO run fast and right on x86 CPUs; not for TensorRT)."""
    if target not in TARGETS:
        raise EdgeanoError(f"unknown INT8 target {target!r}: use {', '.join(TARGETS)}")
    src = Path(src)
    dst = Path(dst) if dst else default_output(src, target)
    meta = validate_inputs(src, dst, data_dir, num, method, eval_dir)
    if float_stride is not None and int(float_stride) < 0:
        raise EdgeanoError(f"--float-stride must be >= 0 (0 = every convolution INT8), got {float_stride}")
    float_stride = FLOAT_STRIDE.get(meta.get("model"), 0) if float_stride is None else int(float_stride)
    from edgeano.artifact import preprocess_of

    preprocess = preprocess_of(meta)
    paths = calibration_paths(data_dir, int(num))
    frames = load_frames(paths, "calibration images")
    if not frames:
        raise EdgeanoError(f"none of the {len(paths)} images in {data_dir} could be decoded")
    if len(frames) < RECOMMENDED_MIN:
        print(f"warning: calibrating on {len(frames)} images; {RECOMMENDED_MIN}+ normal images give steadier INT8 ranges",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="edgeano-int8-", dir=dst.parent if dst.parent.exists() else None) as tmp:
        staged = Path(tmp) / dst.name
        if target == "cpu":
            from edgeano.calibration.cpu_int8 import quantize_cpu

            done = dict(quantize_cpu(src, staged, frames, preprocess, method, progress, float_stride, bias_correction),
                        excluded_reason=HEAD_REASON)
        else:
            done = quantize_qdq(src, staged, frames, preprocess, method, progress, float_stride, bias_correction)
        calibration = {"method": method, "images": len(frames), "data": str(data_dir), "excluded_nodes": done["excluded_nodes"],
                       "excluded_reason": done["excluded_reason"], "bias_correction": done["bias_correction"],
                       "float_stride": float_stride, "float_nodes": done["float_nodes"],
                       "input_layer_nodes": done["input_layer_nodes"],
                       "format": done.get("format", "QDQ int8 symmetric, per-channel weights"), "target": target,
                       "weight_bits": done.get("weight_bits", 8)}
        qmodel = load_onnx(staged)
        set_onnx_metadata(qmodel, dict(meta, precision="int8", calibration=calibration,
                                       threshold=dict(meta["threshold"], note="kept from the FP32 model")))
        write_bytes(staged, qmodel.SerializeToString())
        report = build_report(src, staged, frames, eval_dir, progress=progress)
        report = {"fp32": str(src), "int8": str(dst), "calibration": calibration, **done, **report}
        write_bytes(dst, staged.read_bytes())
    write_json(report_path(dst), report)
    if verbose:
        print_report(report)
    return report
