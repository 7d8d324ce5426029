"""ONNX Runtime runner: the reference backend on any CPU (and CUDA where onnxruntime-gpu is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from edgeano.artifact import check_io, get_onnx_metadata, load_onnx
from edgeano.errors import EdgeanoError
from edgeano.runtime.cpu import physical_cores


MAX_THREADS = 1024  # a bound for library callers; the CLI's --threads stops at the CPUs this process may use


class OnnxRuntimeRunner:
    def __init__(self, path, threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 spinning: Optional[bool] = None):
        """threads: intra-op threads (None: ORT's default, one per physical core). spinning: whether
        idle intra-op threads busy-wait for the next parallel section (ORT's default: yes); off
        leaves their core to other threads of the process, such as the camera loop's capture."""
        import onnxruntime as ort

        self.path, self.spinning = Path(path), spinning
        model = load_onnx(self.path)
        self.meta = get_onnx_metadata(model, str(self.path))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: ORT's warnings are noise for users
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
                raise EdgeanoError(f"threads={threads!r}: ONNX Runtime takes 1..{MAX_THREADS} CPU threads")
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if spinning is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        available = ort.get_available_providers()
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise EdgeanoError(f"ONNX Runtime provider(s) {', '.join(unknown)} not available here (have: {', '.join(available)})")
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types; one line for the user
            raise EdgeanoError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0][:300]}")
        check_io(self.meta, [(i.name, i.shape) for i in self.session.get_inputs()],
                 [o.name for o in self.session.get_outputs()], str(self.path))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.max_batch = 0 if self.input_shape[0] == -1 else int(self.input_shape[0])
        self.min_batch = max(1, self.max_batch)  # a fixed batch N takes exactly N rows (Engine.infer pads)
        self.name = f"onnxruntime-{self.meta.get('precision', 'fp32')}"
        self.on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.threads = int(threads) if threads else (physical_cores() if self.on_cpu else None)

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.output_names, outs))

    def close(self) -> None:
        self.session = None
