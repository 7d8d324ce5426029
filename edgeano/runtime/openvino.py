"""OpenVINO runner: the artifact's ONNX on an x86 CPU through OpenVINO (`pip install 'edgeano[openvino]'`).

Reads the same `.onnx` as ONNX Runtime (FP32, FP16, or INT8 QDQ where the CPU has VNNI: OpenVINO
turns the Q/DQ pairs into its own INT8 kernels, which were measured wrong on an AVX2-only CPU). Compute precision is pinned, never left to the device: OpenVINO's CPU plugin
silently computes FP32 models in bf16 on CPUs that have it (AVX512_BF16, AMX), which moves scores.
`precision="fp32"` (the default) pins f32, so scores match ONNX Runtime; `precision="bf16"` is the
opt-in speed-up where the CPU has bf16, and fails in one line where it does not. The precision the
compiled model reports back is `self.precision` and part of `self.name`, so bench and eval reports
record what actually ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from edgeano.artifact import check_io, get_onnx_metadata, load_onnx
from edgeano.errors import EXIT_USAGE, EdgeanoError

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # ours -> OpenVINO's INFERENCE_PRECISION_HINT
_OV_NAMES = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16", "float16": "fp16"}
_core = None


def openvino_available():
    """(True, version) or (False, why) without raising."""
    try:
        import openvino
    except ImportError as e:
        return False, f"OpenVINO is not installed ({e}); pip install 'edgeano[openvino]'"
    return True, openvino.__version__


def core():
    """One OpenVINO Core per process (it holds the plugins and their thread pools)."""
    global _core
    if _core is None:
        ok, why = openvino_available()
        if not ok:
            raise EdgeanoError(why)
        import openvino as ov

        _core = ov.Core()
    return _core


def cpu_capabilities() -> tuple:
    """OpenVINO's CPU plugin capabilities, e.g. ('FP32', 'INT8', 'BF16', ...)."""
    return tuple(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _refuse_int8_without_vnni(meta, path) -> None:
    """OpenVINO's INT8 kernels gave wrong scores on an x86 CPU without VNNI (AVX2 only), measured on
    the build VM: the TensorRT form (signed activations) moved the Gaussian test model's scores by a
    median 165 % (ranking vs PyTorch 0.90), and the CPU form of a GANomaly trained on MTD ranked its
    test images at Spearman -0.22 against FP32 (AUROC 0.74 -> 0.45), where ONNX Runtime ran the same
    file within 0.7 points. AVX2's u8 x s8 instruction sums pairs into int16, which saturates; VNNI
    sums into int32. So INT8 goes through OpenVINO only where the CPU has VNNI (or AMX)."""
    from edgeano.runtime.cpu import cpu_facts

    if meta.get("precision") != "int8":
        return
    facts = cpu_facts()
    if facts.get("isa") and not facts.get("int8_dot"):
        raise EdgeanoError(f"{path}: OpenVINO's INT8 kernels compute wrong scores on a CPU without VNNI ({facts['isa']}); "
                           "run this INT8 file with --backend onnxruntime, or the FP32 ONNX with --backend openvino", EXIT_USAGE)


def _dims(partial_shape):
    return [d.get_length() if d.is_static else -1 for d in partial_shape]


class OpenVINORunner:
    def __init__(self, path, threads: Optional[int] = None, precision: str = "fp32", device: str = "CPU"):
        self.path = Path(path)
        if precision not in PRECISIONS:
            raise EdgeanoError(f"OpenVINO precision {precision!r}: use {', '.join(PRECISIONS)}", EXIT_USAGE)
        ov_core = core()
        if precision == "bf16" and "BF16" not in cpu_capabilities():
            raise EdgeanoError(f"--precision bf16: this CPU has no bf16 support (OpenVINO CPU capabilities: "
                               f"{', '.join(cpu_capabilities())}; bf16 needs AVX512_BF16 or AMX); use --precision fp32",
                               EXIT_USAGE)
        self.meta = get_onnx_metadata(load_onnx(self.path, load_weights=False), str(self.path))
        _refuse_int8_without_vnni(self.meta, self.path)
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = ov_core.read_model(str(self.path))
            self.compiled = ov_core.compile_model(model, device, config)
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line C++ traces
            raise EdgeanoError(f"OpenVINO cannot load {self.path}: {str(e).strip().splitlines()[0][:300]}")
        inputs = [(i.get_any_name(), _dims(i.get_partial_shape())) for i in self.compiled.inputs]
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        check_io(self.meta, inputs, self.output_names, str(self.path))
        self.input_name, shape = inputs[0]
        self.input_shape = tuple(shape)
        self.max_batch = 0 if shape[0] == -1 else int(shape[0])
        self.request = self.compiled.create_infer_request()
        used = str(self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
        self.compute_precision = _OV_NAMES.get(used, used)
        if self.compute_precision != precision:  # the pin is the point of this runner: never run something else silently
            raise EdgeanoError(f"OpenVINO compiled {self.path} for {used}, not the requested {precision}")
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.on_cpu = device == "CPU"
        self._outputs = list(self.compiled.outputs)
        # what runs: an INT8 artifact's quantized convolutions in INT8, everything else at compute_precision
        # (an FP16 artifact's weights are widened to it)
        int8 = self.meta.get("precision") == "int8"
        self.precision = "int8" if int8 else self.compute_precision
        self.name = f"openvino-{self.precision}" + (f"+{self.compute_precision}" if int8 else "")

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        res = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        # results are views into the request's buffers, overwritten by the next call: copy out
        return {name: np.array(res[o]) for name, o in zip(self.output_names, self._outputs)}

    def close(self) -> None:
        self.request = None
        self.compiled = None
