"""Graph rules for INT8: which nodes stay in float (the head), and what makes a QDQ graph one
that TensorRT 8.6, 10.x and 11 all parse.

The head rule is FP16's too (edgeano/onnx_graph.py, generic, no model names):

    head = every node on the way to a graph output that does not feed any convolution,
           the convolutions themselves excepted.

That is "everything after the last convolution": for the Gaussian model the pooling, the
concatenation, f - mu, the MatMul with the precision factor, the square and the sums, and the
map head (patch pooling, nearest-neighbour distances, upsampling); for GANomaly z - z_hat, its
square and mean, and the map's x - x_hat, |.|, channel mean. These compute distances whose
dynamic range (tiny differences of large features, squared and summed) does not fit 8 bits, and
they cost almost nothing, so they stay in float. Stages inside the network (a residual Add
feeding the next block) feed a convolution and stay quantized.

The input-layer rule: every node before the first convolution (the in-graph Normalize and its
per-image contrast step) stays float too. Its output is the image the reconstruction models
compare their output with (x − x̂ in the head); quantizing the contrast step's intermediates
(values of several units before the clip) moved that image by up to 0.13 and every
reconstruction score with it. The first convolution still reads an 8-bit copy of it.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Set

from edgeano.onnx_graph import FEATURE_OPS, HEAD_REASON, producers
from edgeano.onnx_graph import head_nodes as shared_head_nodes

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def name_nodes(model) -> None:
    """Give every unnamed node a stable name: nodes_to_exclude works by name."""
    seen: Set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def input_layer_nodes(model) -> List[str]:
    """Nodes that no convolution precedes (the input Normalize, contrast step included), in graph
    order, Constants and Q/DQ excepted. ONNX graphs are topologically sorted."""
    after: Set[str] = set()  # tensors computed by or after a convolution
    out: List[str] = []
    for n in model.graph.node:
        if n.op_type in FEATURE_OPS or any(t in after for t in n.input):
            after.update(n.output)
        elif n.op_type not in ("Constant",) + QDQ_OPS:
            out.append(n.name)
    return out


def _producers(model) -> Dict[str, object]:
    return producers(model.graph)


def head_nodes(model) -> List[str]:
    """Names of the head nodes (see module doc; the FP16 set), in graph order. Needs named nodes."""
    return shared_head_nodes(model.graph)


def high_resolution_nodes(model, max_stride: int) -> List[str]:
    """Nodes whose output is a feature map at 1/max_stride of the input's height or finer (the
    stem and first stages of a backbone: convolutions and the activations/adds between them, so
    no Q/DQ pair is left inside the float part). Their INT8 error is what the scores of models that pool early,
    high-resolution features (the Gaussian model's levels 0-2) cannot absorb; they are also the
    cheapest part to leave in float relative to their accuracy cost. 0 = none."""
    import onnx

    if max_stride <= 0:
        return []
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    in_dims = dims.get(model.graph.input[0].name, [])
    if len(in_dims) != 4 or not in_dims[2]:
        return []
    out = []
    for n in model.graph.node:
        d = dims.get(n.output[0]) or []
        if len(d) == 4 and d[2] and in_dims[2] / d[2] <= max_stride and n.op_type not in ("Constant",) + QDQ_OPS:
            out.append(n.name)
    return out


def unquantize_head_inputs(model, head: Iterable[str]) -> int:
    """Make every head input read the float tensor instead of a Q->DQ copy of it, then drop the
    Q/DQ nodes nobody reads. quantize_static quantizes a convolution's *output* even when all its
    readers are excluded; without this the features would enter the head rounded to 8 bits.
    Returns the number of rewired inputs."""
    head = set(head)
    producers = _producers(model)
    rewired = 0
    for node in model.graph.node:
        if node.name not in head:
            continue
        for i, t in enumerate(node.input):
            dq = producers.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a weight's DQ (int8 initializer): not an activation pair
            node.input[i] = q.input[0]
            rewired += 1
    _prune_dead_qdq(model)
    return rewired


def _prune_dead_qdq(model) -> None:
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {t for n in model.graph.node for t in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {t for n in model.graph.node for t in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def drop_unused_opsets(model) -> None:
    """ORT's optimiser declares a dozen contrib domains (com.microsoft, ...) no node uses; a
    portable artifact should only name what it needs."""
    used = {n.domain for n in model.graph.node} | {"", "ai.onnx"}
    for i in reversed(range(len(model.opset_import))):
        if model.opset_import[i].domain not in used:
            del model.opset_import[i]


def tensorrt_problems(model) -> List[str]:
    """Why TensorRT's explicit-quantization import would reject this QDQ graph ([] = fine):
    QDQ needs opset >= 13 (per-channel axis), INT8 only, zero points all 0 (TensorRT is
    symmetric-only), no QLinear*/integer ops, only standard-domain ops, and DequantizeLinear
    never on an INT32 tensor (TensorRT has no INT32 dequantize: biases must stay float)."""
    import onnx
    from onnx import numpy_helper

    problems: List[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        problems.append(f"opset {opset} < 13")
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{n.name}: non-standard domain {n.domain}")
        if n.op_type.startswith("QLinear") or n.op_type in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"):
            problems.append(f"{n.name}: {n.op_type} (TensorRT wants Q/DQ pairs)")
        if n.op_type in QDQ_OPS:
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32:
                problems.append(f"{n.name}: INT32 dequantize (quantized bias)")
            zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if zp is not None:
                if zp.data_type != onnx.TensorProto.INT8:
                    problems.append(f"{n.name}: zero point type {onnx.TensorProto.DataType.Name(zp.data_type)} (needs INT8)")
                elif numpy_helper.to_array(zp).any():
                    problems.append(f"{n.name}: non-zero zero point (TensorRT is symmetric)")
    return problems


def qdq_summary(model) -> Dict[str, int]:
    """How much of the graph runs in INT8: Q/DQ counts and the quantized convolutions."""
    ops = Counter(n.op_type for n in model.graph.node)
    producers = _producers(model)
    quantized = sum(1 for n in model.graph.node if n.op_type in FEATURE_OPS
                    and getattr(producers.get(n.input[0]), "op_type", "") == "DequantizeLinear")
    return {"QuantizeLinear": ops.get("QuantizeLinear", 0), "DequantizeLinear": ops.get("DequantizeLinear", 0),
            "convolutions": sum(ops.get(o, 0) for o in FEATURE_OPS), "convolutions_int8": quantized}
