"""FP32 edgeano ONNX -> FP16 ONNX with float32 input/outputs and an explicit list of nodes kept in FP32.

What stays FP32, and why (the rule, applied to every edgeano model):

1. The head (edgeano/onnx_graph.py, the same rule INT8 calibration uses): every node on the way
   to an output (`score`, `anomaly_map`) that feeds no convolution, i.e. what runs after the last
   convs (ReduceMean/Sub/Pow/Abs/MatMul/ReduceSum/ReduceMin/..., the feature pooling and the map
   head of a Gaussian model). Backbone residual Adds and the input Normalize feed later convs,
   so they are not head. Scores are small differences of near-equal numbers and sums of squares:
   in FP16 the differences lose digits (cancellation), their squares underflow below 6e-8, and
   Mahalanobis-style sums can pass 65504. The head is a handful of cheap elementwise/reduction
   ops, so FP32 costs nothing measurable.
2. Range: the FP32 graph is run with ONNX Runtime on `frames` (real images) with every float
   intermediate exposed as an output; a node whose output exceeds `max_fp16` (default 6e4, FP16
   max is 65504) in magnitude is kept FP32.
3. ONNX Runtime's default block list (ops without float16 semantics: TopK, Range, Upsample, ...).

The conversion itself is onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types=True:
Casts are inserted at the graph boundary and around kept nodes; initializers are cast to FP16),
followed by removing the FP16 round-trips it leaves between two kept nodes and before outputs.
TensorRT honours the kept-FP32 nodes when the engine is built strongly typed (or with precision
constraints); a plain --fp16 build may still pick FP16 for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Set

import numpy as np

from edgeano.artifact import get_onnx_metadata, load_onnx, preprocess_of, set_onnx_metadata
from edgeano.errors import EXIT_ERROR, EdgeanoError
from edgeano.fileio import write_bytes
from edgeano.onnx_graph import HEAD_REASON, head_nodes

FP16_MAX = 65504.0
SCORE_OUTPUT = "score"
REASON_RANGE = "FP16 range: max |output| {:.3g} > {:.3g} on probe frames"


def to_fp16(src_onnx: Path, dst_onnx: Path, frames: Optional[List[np.ndarray]] = None, max_fp16: float = 6.0e4) -> Dict:
    """Convert `src_onnx` (FP32 edgeano artifact) to FP16 at `dst_onnx`; input and outputs stay float32.

    frames: BGR uint8 images (any size) for the range probe; without them only rule 1 applies
    (and random inputs check the result for non-finite outputs). Returns
    {"kept_fp32": [(node, reason)], "n_nodes", "n_kept", "probe_frames", "max_abs": {node: value} (probed),
     "check": {"score_max_rel", "map_max_abs", "finite"}} and writes metadata precision="fp16" and
    meta["fp16"] = {"kept_fp32": [node names], "reasons": {node: reason}, "rule": ...}."""
    import onnx

    src_onnx, dst_onnx = Path(src_onnx), Path(dst_onnx)
    model = load_onnx(src_onnx)
    meta = get_onnx_metadata(model, str(src_onnx))
    if meta.get("precision", "fp32") != "fp32":
        raise EdgeanoError(f"{src_onnx} is already {meta['precision']}; convert the FP32 export")
    if src_onnx.resolve() == dst_onnx.resolve():
        raise EdgeanoError("FP16 output must be a different file from the FP32 input")
    _name_nodes(model.graph)

    if SCORE_OUTPUT not in {o.name for o in model.graph.output}:
        raise EdgeanoError(f"{src_onnx}: the graph has no '{SCORE_OUTPUT}' output; is it an edgeano export?")
    kept: Dict[str, str] = {n: HEAD_REASON for n in head_nodes(model.graph)}
    pre = preprocess_of(meta)
    x = pre.batch(frames) if frames else None
    max_abs: Dict[str, float] = {}
    if x is not None and len(x):
        max_abs = probe_ranges(model, x)
        for node, v in max_abs.items():
            if v > max_fp16 and node not in kept:
                kept[node] = REASON_RANGE.format(v, max_fp16)

    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load_from_string(model.SerializeToString()), keep_io_types=True,
                                    node_block_list=sorted(kept))
    _drop_duplicate_casts(half.graph)
    _drop_cast_roundtrips(half.graph)
    _topological_sort(half.graph)  # the converter appends its Casts last; checker and TensorRT want order
    meta = dict(meta, precision="fp16", fp16={
        "kept_fp32": sorted(kept), "reasons": kept, "max_fp16": max_fp16, "probe_frames": 0 if x is None else int(len(x)),
        "rule": "head after the last conv (every output) + nodes whose FP32 outputs exceed max_fp16 on probe frames stay FP32"})
    set_onnx_metadata(half, meta)
    onnx.checker.check_model(half)

    check_x = x if x is not None and len(x) else np.random.default_rng(0).random((2, *pre.input_shape), dtype=np.float32)
    check = _compare(model, half, check_x[:16])
    if not check["finite"]:
        raise EdgeanoError(f"FP16 model gives non-finite outputs on the check inputs; keep FP32 for {src_onnx.name}", EXIT_ERROR)
    write_bytes(dst_onnx, half.SerializeToString())
    return {"kept_fp32": sorted(kept.items()), "n_nodes": len(model.graph.node), "n_kept": len(kept),
            "probe_frames": 0 if x is None else int(len(x)), "max_abs": max_abs, "check": check, "path": str(dst_onnx)}


def probe_ranges(model, x: np.ndarray) -> Dict[str, float]:
    """Run the FP32 graph with every float intermediate as an extra output; max |value| per node."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    probe = onnx.load_from_string(model.SerializeToString())
    existing = {o.name for o in probe.graph.output}
    owner: Dict[str, str] = {}
    for node in probe.graph.node:
        for out in node.output:
            if out and types.get(out) == TensorProto.FLOAT:
                owner[out] = node.name
                if out not in existing:
                    probe.graph.output.append(onnx.helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # see the graph as written
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs() if o.name in owner]
    peak: Dict[str, float] = {}
    for chunk in _batches(sess, x):
        for name, val in zip(names, _run(sess, names, chunk)):
            v = float(np.max(np.abs(val))) if val.size else 0.0
            node = owner[name]
            peak[node] = max(peak.get(node, 0.0), v)
    return peak


def _name_nodes(graph) -> None:
    """The converter blocks nodes by name: give unnamed or duplicate-named nodes unique names."""
    used: Set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in used:
            node.name = f"{node.op_type}_{i}"
        used.add(node.name)


def _cast_to(node) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), -1)


def _drop_duplicate_casts(graph) -> None:
    """When one FP16 tensor feeds two kept nodes (e.g. avg and max pooling of the same level), the
    converter emits the same Cast twice under one output name, which breaks SSA: keep the first."""
    seen: Dict[str, tuple] = {}
    keep = []
    for n in graph.node:
        sig = (n.op_type, tuple(n.input), _cast_to(n))
        if n.op_type == "Cast" and n.output[0] in seen and seen[n.output[0]] == sig:
            continue
        seen.update({o: sig for o in n.output})
        keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


def _drop_cast_roundtrips(graph) -> None:
    """The converter wraps every kept node in Cast(fp16) -> Cast(fp32), even between two kept nodes
    and before a float32 graph output: a value > 65504 would still become inf there, and the score
    would be rounded to FP16. Rewire X -> Cast16 -> Cast32 -> Y to use X directly (an Identity when Y
    is a graph output), then drop Casts nobody reads."""
    from onnx import TensorProto

    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    replace: Dict[str, str] = {}
    drop = set()
    for b in graph.node:
        a = producer.get(b.input[0]) if b.op_type == "Cast" and _cast_to(b) == TensorProto.FLOAT else None
        if a is None or a.op_type != "Cast" or _cast_to(a) != TensorProto.FLOAT16:
            continue
        if b.output[0] in outputs:
            b.op_type, b.input[0] = "Identity", a.input[0]
            del b.attribute[:]
        else:
            replace[b.output[0]] = a.input[0]
            drop.add(id(b))
    keep = [n for n in graph.node if id(n) not in drop]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in replace:
                n.input[i] = replace[name]
    while True:  # dead Casts (their fp16 copy is no longer read)
        read = {i for n in keep for i in n.input} | outputs
        dead = [n for n in keep if n.op_type == "Cast" and not any(o in read for o in n.output)]
        if not dead:
            break
        keep = [n for n in keep if n not in dead]
    live = {o for n in keep for o in n.output} | {i.name for i in graph.input}
    vis = [v for v in graph.value_info if v.name in live]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.value_info[:]
    graph.value_info.extend(vis)


def _topological_sort(graph) -> None:
    """Reorder graph.node so every node comes after the producers of its inputs (Kahn, stable)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes, ordered = list(graph.node), []
    pending = nodes
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise EdgeanoError(f"FP16 graph has a cycle or dangling input at {rest[0].name}", EXIT_ERROR)
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _batches(sess, x: np.ndarray, most: int = 8):
    """Chunks of x the session accepts: a fixed batch dim (static export) means that many at a time."""
    dim = sess.get_inputs()[0].shape[0]
    step = dim if isinstance(dim, int) and dim > 0 else most
    if isinstance(dim, int) and len(x) < dim:
        x = np.resize(x, (dim, *x.shape[1:]))  # repeat frames to fill one fixed-size batch
    return [x[i:i + step] for i in range(0, len(x) - len(x) % step if isinstance(dim, int) else len(x), step)]


def _run(sess, names, x: np.ndarray):
    return sess.run(names, {sess.get_inputs()[0].name: x})


def _compare(fp32, fp16, x: np.ndarray) -> Dict:
    from edgeano.compare import compare

    a, b = _session(fp32), _session(fp16)
    names = [o.name for o in a.get_outputs()]
    chunks = _batches(a, x)
    ra = {k: np.concatenate(v) for k, v in zip(names, zip(*[_run(a, names, c) for c in chunks]))}
    rb = {k: np.concatenate(v) for k, v in zip(names, zip(*[_run(b, names, c) for c in chunks]))}
    result = compare(rb, ra)  # the one comparator (edgeano.compare); to_fp16 reports, it does not judge
    out = {"finite": "finite" not in {m for r in result.outputs.values() for m in r.failed}, "n": int(len(ra[names[0]]))}
    if SCORE_OUTPUT in result.outputs:
        out["score_max_rel"] = result.outputs[SCORE_OUTPUT].metrics.get("max_rel", float("inf"))
    if "anomaly_map" in result.outputs:
        out["map_max_abs"] = result.outputs["anomaly_map"].metrics.get("max_abs", float("inf"))
    return out

