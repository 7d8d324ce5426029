"""INT8 for x86 CPUs: the same calibration as `quantize.py`, in the form CPU kernels are fast at.

The TensorRT artifact (quantize.py) is symmetric signed INT8 with 8-bit weights behind Q/DQ
pairs, one pair per consumer: TensorRT's form. On a CPU it is slower than FP32 (ONNX Runtime
fuses only part of it and runs the rest as Q/DQ islands: 0.83x FP32 on the Gaussian model, 1 thread,
docs/benchmarks/cpu.md).

This module writes the CPU form (`edgeano calibrate --target cpu`):
- activations unsigned, asymmetric (U8: what x86 INT8 dot products take, and twice the resolution
  of signed symmetric for the non-negative ReLU6 outputs), weights signed per channel, stored as
  INT8 initializers (8 bits: 7-bit weights, ONNX Runtime's reduce_range against AVX2 saturation,
  lost 0.79 AUROC points on MTD against 0.24 with 8 bits, at the same speed);
- biases quantized to INT32 (the QLinearConv form MLAS fuses);
- Q/DQ pairs shared between consumers, so ONNX Runtime folds them into QLinearConv / QLinearAdd;
- the same float scoring head, bias correction and float stem as the TensorRT artifact.
Not for TensorRT (asymmetric zero points, INT32 biases): `tensorrt_problems` says so, and the
metadata says `"target": "cpu"`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

from edgeano.calibration.bias import apply_bias_correction, head_input_tensors, measure_bias
from edgeano.calibration.graph import (drop_unused_opsets, head_nodes, high_resolution_nodes, input_layer_nodes, name_nodes, qdq_summary,
                                      unquantize_head_inputs)
from edgeano.calibration.quantize import PERCENTILE, _calibrate_method, _stride
from edgeano.calibration.reader import ImageCalibrationReader
from edgeano.fileio import write_bytes

CPU_FORMAT = "QDQ uint8 asymmetric activations, per-channel int8 weights, int32 biases (x86 CPU form)"


def quantize_cpu(src: Path, dst: Path, frames, preprocess, method: str = "minmax", progress: bool = True,
                 float_stride: int = 0, bias_correction: bool = True, reduce_range: bool = False) -> Dict:
    """Calibrate `src` on `frames` and write the CPU-form INT8 ONNX `dst` (metadata untouched).
    Returns what was done, as quantize.quantize_qdq does."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgeano-calib-cpu-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        name_nodes(model)
        head = head_nodes(model)
        inputs = input_layer_nodes(model)  # as in the TensorRT form: the image the head compares with stays exact
        stem = [n for n in high_resolution_nodes(model, float_stride) if n not in inputs]
        onnx.save(model, str(pre))
        input_name = model.graph.input[0].name
        dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
        batch = dim0.dim_value if dim0.HasField("dim_value") and dim0.dim_value > 0 else 1
        reader = ImageCalibrationReader(frames, preprocess, input_name, batch=batch, progress=progress)
        extra = {"CalibStridedMinMax": _stride(len(reader))}
        if method == "percentile":
            extra["CalibPercentile"] = PERCENTILE
        qpath = Path(tmp) / "int8.onnx"
        t0 = time.time()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                quantize_static(str(pre), str(qpath), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                nodes_to_exclude=head + inputs + stem, calibrate_method=_calibrate_method(method), extra_options=extra)
        finally:
            root.setLevel(level)
            reader.close()
        qmodel = onnx.load(str(qpath))
    rewired = unquantize_head_inputs(qmodel, head)
    corrected = []
    if bias_correction:
        corrected = apply_bias_correction(qmodel, head, measure_bias(model, qmodel, head_input_tensors(qmodel, head), frames,
                                                                     preprocess, batch, progress))
    drop_unused_opsets(qmodel)
    write_bytes(dst, qmodel.SerializeToString())
    return {"excluded_nodes": head, "float_nodes": stem, "float_stride": float_stride, "input_layer_nodes": inputs,
            "head_inputs_kept_float": rewired,
            "bias_correction": corrected, "qdq": qdq_summary(qmodel), "calibration_seconds": round(time.time() - t0, 1),
            "batch": batch, "format": CPU_FORMAT.replace("weights", "weights in 7 bits") if reduce_range else CPU_FORMAT,
            "weight_bits": 7 if reduce_range else 8}
