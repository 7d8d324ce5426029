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

from pathlib import Path
from typing import Dict

from edgeano.calibration.quantize import calibrate_qdq
from edgeano.fileio import write_bytes

CPU_FORMAT = "QDQ uint8 asymmetric activations, per-channel int8 weights, int32 biases (x86 CPU form)"


def quantize_cpu(src: Path, dst: Path, frames, preprocess, method: str = "minmax", progress: bool = True,
                 float_stride: int = 0, bias_correction: bool = True, reduce_range: bool = False) -> Dict:
    """Calibrate `src` on `frames` and write the CPU-form INT8 ONNX `dst` (metadata untouched).
    Returns what was done, as quantize.quantize_qdq does. The shared steps: quantize.calibrate_qdq;
    ORT's defaults (asymmetric, shared Q/DQ pairs, INT32 biases) are the CPU form."""
    qmodel, done = calibrate_qdq(src, frames, preprocess, method, progress, float_stride, bias_correction, "uint8",
                                 reduce_range=reduce_range)
    write_bytes(dst, qmodel.SerializeToString())
    return {**done, "format": CPU_FORMAT.replace("weights", "weights in 7 bits") if reduce_range else CPU_FORMAT,
            "weight_bits": 7 if reduce_range else 8}
