"""The TensorRT build plan, pure: (TensorRT version, the artifact, what was asked) -> every decision
the build makes, before any TensorRT object exists.

    plan = plan_build(trt, BuildRequest("10.3.0", "int8", (-1, 3, 224, 224), max_batch=4, fp32_nodes=head))
    plan.network_flags     # NetworkDefinitionCreationFlag members   (here: none)
    plan.builder_flags     # BuilderFlag members to set               (INT8, FP16, PREFER_PRECISION_CONSTRAINTS)
    plan.cleared_flags     # BuilderFlag members to clear             (TF32)
    plan.profile           # ((1,3,224,224), (1,...), (4,...)): min, opt, max
    plan.decisions         # one sentence per decision, recorded in the engine's sidecar

`trt` is the `tensorrt` module (or any namespace with the same enums): the plan holds that version's
real enum objects, so tests run it under each version's bindings (`trt-api/trt-python VERSION`) with
nothing built. `trt_build.py` carries the plan out.

Per version (major.minor):
  network   8.x: EXPLICIT_BATCH. 10.x: STRONGLY_TYPED for an FP16 ONNX, else weakly typed.
            >= 11: always strongly typed (no precision flags, no calibrators exist).
  fp16      plain ONNX: FP16 flag (8.x/10.x; refused on 11). FP16 ONNX: strongly typed on 10/11; on
            8.x FP16 flag + the layers the ONNX types FP32 pinned FP32 ("typed" islands).
  int8      QDQ ONNX on 8.x/10.x: INT8 + FP16, so the layers the QDQ leaves float (the stem kept
            out of INT8, glue) may run FP16, and the scoring head nodes pinned FP32 ("named"
            islands). On 11: strongly typed, those layers run as the ONNX types them (FP32).
            Plain ONNX + calibration images (8.x/10.x): INT8 + FP16 + entropy calibrator, head pinned.
  tf32      cleared unless asked (`--tf32`): TF32 is on by default and gives FP32 layers (the
            "fp32" engine, the FP32-kept head) a 10-bit mantissa on Ampere/Orin.
  batch     dynamic ONNX: one profile min 1, opt `opt_batch` (default 1: the camera loop runs
            batch 1), max `max_batch`. With DLA: a static profile (min = opt = max = max_batch),
            since DLA runs static shapes only (padded partial batches). Fixed ONNX: its own batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from edgeano.errors import EXIT_USAGE, EdgeanoError

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_BATCH = 8  # dynamic-batch ONNX: calibration runs at this one shape (its own profile)
Shape = Tuple[int, ...]


def trt_version_tuple(version: str) -> Tuple[int, int]:
    parts = (str(version).split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


def flag_name(flag) -> str:
    """BuilderFlag.FP16 -> "FP16" for real pybind enums and the 8.5 names-only stand-in alike."""
    return getattr(flag, "name", None) or str(flag).split(".")[-1]


def usage(msg: str) -> EdgeanoError:
    return EdgeanoError(msg, EXIT_USAGE)


def resolve_precision(requested: Optional[str], onnx_precision: str, trt_version: Optional[str] = None,
                      calib_data=None) -> Tuple[str, str]:
    """(engine precision, how): how is "fp32", "fp16-flag", "typed" (precision from the ONNX's own
    types: FP16 ONNX, QDQ ONNX) or "calibrate". trt_version None checks what holds for every version."""
    p = (requested or onnx_precision).lower()
    if p not in PRECISIONS:
        raise usage(f"--precision {p}: choose fp32, fp16 or int8")
    major = trt_version_tuple(trt_version)[0] if trt_version else None
    if calib_data is not None and p != "int8":
        raise usage("--calib-data is for --precision int8 only")
    if onnx_precision == "int8":
        if p != "int8":
            raise usage(f"this is a QDQ (INT8) ONNX: it builds --precision int8 only; for {p} build the FP32 or FP16 ONNX")
        if calib_data is not None:
            raise usage("this ONNX is already quantized (QDQ): drop --calib-data")
        return "int8", "typed"
    if onnx_precision == "fp16":
        if p != "fp16":
            what = "the QDQ ONNX from `edgeano calibrate`" if p == "int8" else "the FP32 ONNX"
            raise usage(f"this is an FP16 ONNX: it builds --precision fp16 only; for {p} build {what}")
        return "fp16", "typed"
    if p == "fp32":
        return "fp32", "fp32"
    if p == "fp16":
        if major is not None and major >= 11:
            raise usage("TensorRT >= 11 networks are strongly typed: fp16 needs the FP16 ONNX "
                        "(`edgeano export --model MODEL --fp16`), then `edgeano build MODEL.fp16.onnx`")
        return "fp16", "fp16-flag"
    if major is not None and major >= 11:
        raise usage("TensorRT >= 11 has no on-device calibration: int8 needs the QDQ ONNX "
                    "(`edgeano export --model MODEL --int8 --data DIR` or `edgeano calibrate`)")
    if calib_data is None:
        raise usage("int8 from a plain FP32 ONNX needs --calib-data DIR (normal images, calibrated on this device) "
                    "or the QDQ ONNX from `edgeano export --int8`")
    return "int8", "calibrate"


def check_batch(input_shape: Sequence[int], max_batch: int, opt_batch: Optional[int] = None, source: str = "the ONNX") -> int:
    """The engine's largest batch: `max_batch` for a dynamic-batch ONNX, else its fixed batch."""
    if max_batch < 1:
        raise usage(f"--batch {max_batch}: must be >= 1")
    dynamic = input_shape[0] == -1
    if opt_batch is not None:
        if not dynamic:
            raise usage(f"--opt-batch: {source} has a fixed batch of {input_shape[0]}; it needs an ONNX exported with --dynamic-batch")
        if not 1 <= opt_batch <= max_batch:
            raise usage(f"--opt-batch {opt_batch}: must be between 1 and --batch {max_batch}")
    if not dynamic and max_batch not in (1, input_shape[0]):
        raise usage(f"{source} has a fixed batch of {input_shape[0]}; re-export with --dynamic-batch for --batch {max_batch}")
    return max_batch if dynamic else int(input_shape[0])


def check_dla(dla_core: Optional[int], precision: str, opt_batch: Optional[int], max_batch: int, dynamic: bool) -> None:
    """DLA: a core number, FP16 or INT8, and one static shape (so --opt-batch can only be --batch)."""
    if dla_core is None:
        return
    if dla_core < 0:
        raise usage(f"--dla {dla_core}: DLA cores are numbered from 0")
    if precision == "fp32":
        raise usage("DLA runs FP16 or INT8 only: pass --precision fp16 (or int8) with --dla")
    if dynamic and opt_batch not in (None, max_batch):
        raise usage(f"--opt-batch {opt_batch} with --dla: DLA runs one static shape, so opt = --batch {max_batch}")


@dataclass(frozen=True)
class BuildRequest:
    trt_version: str
    artifact_precision: str  # the ONNX's: fp32, fp16 (FP16 ONNX) or int8 (QDQ ONNX)
    input_shape: Shape  # (N, C, H, W), N = -1 when dynamic
    precision: Optional[str] = None  # asked; None = the artifact's
    max_batch: int = 1
    opt_batch: Optional[int] = None  # None = 1
    dla_core: Optional[int] = None
    calib_data: bool = False  # calibration images given (--calib-data)
    tf32: bool = False  # --tf32: let FP32 layers use TF32
    fp32_nodes: Tuple[str, ...] = ()  # ONNX nodes to keep FP32 where FP16 is allowed around them (the scoring head)


@dataclass(frozen=True)
class BuildPlan:
    trt_version: str
    precision: str
    how: str  # fp32, fp16-flag, typed, calibrate (see resolve_precision)
    strongly_typed: bool
    network_flags: Tuple  # NetworkDefinitionCreationFlag members
    builder_flags: Tuple  # BuilderFlag members to set
    cleared_flags: Tuple  # BuilderFlag members to clear
    calibrate: bool
    calibration_batch: int  # 0 without calibration
    calibration_shape: Optional[Shape]  # dynamic batch: the calibration profile's one shape
    fp32_islands: str  # "none", "typed" (layers the ONNX types FP32) or "named" (fp32_nodes)
    fp32_nodes: Tuple[str, ...]
    profile: Optional[Tuple[Shape, Shape, Shape]]  # (min, opt, max) input shapes; None for a fixed batch
    max_batch: int
    dla_core: Optional[int]
    device_type: object  # DeviceType.DLA with a DLA core, else None (GPU)
    decisions: Tuple[str, ...]

    def network_flag_bits(self) -> int:
        return sum(1 << int(f) for f in self.network_flags)

    def sidecar(self) -> Dict:
        """What the sidecar records: every decision, by name."""
        return {"how": self.how, "strongly_typed": self.strongly_typed,
                "network_flags": [flag_name(f) for f in self.network_flags],
                "builder_flags": [flag_name(f) for f in self.builder_flags],
                "cleared_flags": [flag_name(f) for f in self.cleared_flags],
                "fp32_islands": self.fp32_islands, "fp32_nodes": list(self.fp32_nodes),
                "profile": [list(s) for s in self.profile] if self.profile else None,
                "calibration_batch": self.calibration_batch or None, "decisions": list(self.decisions)}


def plan_build(trt, req: BuildRequest) -> BuildPlan:
    """Every decision of the build for `req`, with `trt`'s enum objects (see the module doc)."""
    major, minor = trt_version_tuple(req.trt_version)
    precision, how = resolve_precision(req.precision, req.artifact_precision, req.trt_version,
                                       "calib" if req.calib_data else None)
    max_batch = check_batch(req.input_shape, int(req.max_batch), req.opt_batch)
    check_dla(req.dla_core, precision, req.opt_batch, max_batch, req.input_shape[0] == -1)
    flags, decisions = [], []
    strongly_typed = major >= 11 or (major == 10 and how == "typed" and precision == "fp16")
    if major < 10:
        network = (trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH,)  # 8.x: implicit batch otherwise
    elif major == 10 and strongly_typed:
        network = (trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED,)
    else:
        network = ()  # 10.x weakly typed; >= 11 strongly typed is the only mode
    islands, nodes = "none", ()
    if strongly_typed:
        decisions.append(f"strongly typed network: every layer runs in the precision the {precision.upper()} ONNX gives it"
                         + (" (the layers the QDQ leaves float run FP32)" if precision == "int8" else ""))
    elif how == "fp16-flag":
        flags.append(trt.BuilderFlag.FP16)
        decisions.append("FP16 allowed for every layer (plain FP32 ONNX): TensorRT picks per layer; "
                         "the FP16 ONNX keeps its unsafe parts FP32")
    elif how == "typed" and precision == "fp16":  # 8.x: no strong typing; pin what the ONNX types FP32
        flags += [trt.BuilderFlag.FP16, trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS]
        islands = "typed"
        decisions.append(f"TensorRT {major}.{minor} has no strongly typed networks: FP16 flag, and the layers the "
                         "FP16 ONNX types FP32 pinned to FP32")
    elif precision == "int8":
        flags.append(trt.BuilderFlag.INT8)
        what = "Q/DQ scales from the ONNX" if how == "typed" else "entropy calibration on this device"
        if req.fp32_nodes:
            flags += [trt.BuilderFlag.FP16, trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS]
            islands, nodes = "named", tuple(req.fp32_nodes)
            decisions.append(f"INT8 ({what}) with FP16 allowed for the layers left float; "
                             f"the {len(nodes)} scoring-head node(s) pinned to FP32")
        else:
            decisions.append(f"INT8 ({what}); no scoring head found, so the layers left float stay FP32")
    else:
        decisions.append("FP32 engine: no precision flags")
    if req.tf32:
        decisions.append("TF32 allowed for FP32 layers (--tf32)")
        cleared = ()
    else:
        cleared = (trt.BuilderFlag.TF32,)
        decisions.append("TF32 off: FP32 layers keep FP32's 23-bit mantissa (--tf32 to allow it)")
    calibrate = how == "calibrate"
    cal_batch = (CALIBRATION_BATCH if req.input_shape[0] == -1 else int(req.input_shape[0])) if calibrate else 0
    cal_shape = (CALIBRATION_BATCH,) + tuple(req.input_shape[1:]) if calibrate and req.input_shape[0] == -1 else None
    profile = _profile(req, max_batch, decisions)
    device_type = None
    if req.dla_core is not None:
        flags.append(trt.BuilderFlag.GPU_FALLBACK)
        device_type = trt.DeviceType.DLA
        decisions.append(f"DLA core {req.dla_core}, layers it cannot run fall back to the GPU")
    return BuildPlan(req.trt_version, precision, how, strongly_typed, network, tuple(flags), cleared, calibrate, cal_batch,
                     cal_shape, islands, nodes, profile, max_batch, req.dla_core, device_type, tuple(decisions))


def _profile(req: BuildRequest, max_batch: int, decisions) -> Optional[Tuple[Shape, Shape, Shape]]:
    rest = tuple(req.input_shape[1:])
    if req.input_shape[0] != -1:
        decisions.append(f"fixed batch {max_batch} (the ONNX's)")
        return None
    if req.dla_core is not None:
        decisions.append(f"DLA needs static shapes: profile min = opt = max = batch {max_batch} "
                         "(shorter batches are padded)")
        return ((max_batch,) + rest,) * 3
    opt = req.opt_batch or 1
    decisions.append(f"profile batch min 1, opt {opt}, max {max_batch}" + ("" if req.opt_batch else " (opt 1: the camera loop "
                                                                          "runs batch 1; --opt-batch to change)"))
    return ((1,) + rest, (opt,) + rest, (max_batch,) + rest)


# -- FP32 islands: which parsed layers to pin (plain tuples in, names out) ---------------------------
NO_PIN_TYPES = ("CONSTANT", "SHAPE", "CAST", "IDENTITY")  # no arithmetic to protect (8.5 parses Cast as IDENTITY)


def fp32_layers(layers: Sequence[Tuple[str, str, Sequence[str]]], islands: str, fp32_nodes: Sequence[str] = (),
                onnx_nodes: Sequence[str] = ()):
    """Names of the layers to pin to FP32. layers: (layer name, LayerType name, output DataType
    names) in network order. "typed": every computing layer whose outputs are all FLOAT; "named":
    the layers the ONNX parser made from `fp32_nodes`: named after the node, or node_N for a
    node's extra layers (unless node_N is itself one of `onnx_nodes`, every node of the graph)."""
    if islands == "typed":
        return [n for n, kind, dtypes in layers if kind not in NO_PIN_TYPES and dtypes and all(d == "FLOAT" for d in dtypes)]
    if islands == "named":
        keep, known = set(fp32_nodes), set(onnx_nodes)
        return [n for n, kind, _ in layers if kind not in NO_PIN_TYPES and _node_of(n, known) in keep]
    return []


def _node_of(layer_name: str, onnx_nodes) -> str:
    """The ONNX node a parsed layer came from: its own name, or "node" for "node_3"."""
    if layer_name in onnx_nodes:
        return layer_name
    base, _, tail = layer_name.rpartition("_")
    return base if base and tail.isdigit() else layer_name
