"""Small walks over an ONNX graph, and the one precision rule FP16 conversion and INT8
calibration share.

Both keep a model's *head* in float32: the nodes on the way to an output (`score`, and
`anomaly_map` where the model has one) that run after the last feature layer — distances,
squares, nearest-neighbour minima, reductions, the map's upsampling — whose values are small
differences of large numbers or sums with a large dynamic range. One rule decides it for both,
over every graph output: a node is in the head when an output depends on it and it is neither a
convolution nor upstream of one. Backbone residual Adds and the in-graph Normalize feed later
convolutions, so they are not head; a feature map that feeds both a later stage and the map head
is computed in FP16/INT8, and the head reads it in float."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

FEATURE_OPS = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"})  # what FP16 / INT8 are for
HEAD_REASON = ("head: after the last convolution on the way to an output (score, anomaly map: distances, squares, "
               "minima and reductions with a large dynamic range); cheap, so kept in float32")


def producers(graph) -> Dict[str, object]:
    """tensor name -> the node that writes it."""
    return {out: node for node in graph.node for out in node.output}


def upstream(start_nodes: Iterable, producer: Dict[str, object]) -> Set[str]:
    """Names of `start_nodes` and of every node they depend on."""
    seen: Set[str] = set()
    stack = list(start_nodes)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(producer[t] for t in node.input if t in producer)
    return seen


def head_nodes(graph, outputs: Optional[Iterable[str]] = None, feature_ops: Iterable[str] = FEATURE_OPS) -> List[str]:
    """Names, in graph order, of the nodes `outputs` (default: every graph output) depend on that
    are neither a `feature_ops` node nor upstream of one. Needs unique node names."""
    producer = producers(graph)
    outputs = [o.name for o in graph.output] if outputs is None else list(outputs)
    feature_ops = set(feature_ops)
    feeds_features = upstream((n for n in graph.node if n.op_type in feature_ops), producer)
    on_output_path = upstream((producer[o] for o in outputs if o in producer), producer)
    return [n.name for n in graph.node if n.name in on_output_path and n.name not in feeds_features]
