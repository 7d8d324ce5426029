"""Multiply-accumulates of an ONNX graph, per image: what `edgeano bench` divides by its time.

Counts the ops that carry the arithmetic of these models (Conv, ConvTranspose, Gemm, MatMul and
their quantized forms QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger); element-wise ops,
pooling and reductions are left out (they are memory-bound and a few percent of the MACs). Shapes
come from ONNX shape inference at batch 1, so a dynamic batch counts one image. Torch-free.
"""

from __future__ import annotations

from typing import Dict, List, Optional

CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> index of the weight input
MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}


SMALL = 4096  # fold only small constant tensors (shape arithmetic), never weights


def _fold_small_constants(model) -> None:
    """Evaluate the nodes whose inputs are all small constants (the exporter computes e.g. the Pad
    sizes in-graph, which shape inference cannot see through) and store their outputs as
    initializers, in place."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if _prod(i.dims) <= SMALL}
    keep = []
    for node in model.graph.node:
        ins = [i for i in node.input if i]
        if all(i in consts for i in ins) and (ins or node.op_type == "Constant"):
            try:
                outs = ReferenceEvaluator(node).run(None, {i: consts[i] for i in ins})
            except Exception:  # an op the reference runtime lacks: leave the node to shape inference
                keep.append(node)
                continue
            if all(getattr(o, "size", SMALL + 1) <= SMALL for o in outs):
                for name, value in zip(node.output, outs):
                    consts[name] = value
                    model.graph.initializer.append(numpy_helper.from_array(value, name))
                continue
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _shapes(model) -> Dict[str, List[Optional[int]]]:
    """tensor name -> dims (None where unknown), after shape inference with the batch set to 1."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # do not touch the caller's graph
    _fold_small_constants(model)
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    # a weight behind a DequantizeLinear (QDQ artifacts) has the shape of its quantized initializer
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])
    return shapes


def _prod(dims) -> Optional[int]:
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= int(d)
    return out


def _conv(node, shapes) -> Optional[int]:
    w = shapes.get(node.input[CONV_OPS[node.op_type]])
    y = shapes.get(node.output[0])
    if not w or not y:
        return None
    return _prod([y[0], y[1]] + y[2:] + w[1:])  # N * M * spatial_out * (C/group * kernel)


def _conv_transpose(node, shapes) -> Optional[int]:
    x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
    if not x or not w:
        return None
    return _prod(x + w[1:])  # N * C * spatial_in * (M/group * kernel)


def _matmul(node, shapes) -> Optional[int]:
    ia, ib = MATMUL_OPS[node.op_type]
    a, b = shapes.get(node.input[ia]), shapes.get(node.input[ib])
    if not a or not b:
        return None
    if node.op_type == "Gemm":
        attrs = {at.name: at.i for at in node.attribute}
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return _prod([m, k, n])
    if len(a) == 1:
        a = [1] + a
    if len(b) == 1:
        b = b + [1]
    batch = max(a[:-2], b[:-2], key=len) if (a[:-2] or b[:-2]) else []
    return _prod(list(batch) + [a[-2], a[-1], b[-1]])


def count_macs(model) -> Dict:
    """{"macs": total per image, "by_op": {op_type: macs}, "nodes": counted, "unknown": names}
    for an onnx.ModelProto (or a path)."""
    if not hasattr(model, "graph"):
        from edgeano.artifact import load_onnx

        model = load_onnx(model)
    shapes = _shapes(model)
    by_op: Dict[str, int] = {}
    unknown, counted = [], 0
    for node in model.graph.node:
        if node.op_type in CONV_OPS:
            n = _conv(node, shapes)
        elif node.op_type == "ConvTranspose":
            n = _conv_transpose(node, shapes)
        elif node.op_type in MATMUL_OPS:
            n = _matmul(node, shapes)
        else:
            continue
        if n is None:
            unknown.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + n
        counted += 1
    return {"macs": sum(by_op.values()), "by_op": by_op, "nodes": counted, "unknown": unknown}
