"""Small walks over an ONNX graph, shared by the FP16 conversion and INT8 calibration.

Both keep a model's *scoring head* in higher precision: the nodes on the way to an output that
run after the last feature layer (distances, squares, reductions with a large dynamic range).
One rule decides it for both: a node is in the head when an output depends on it and it is
neither a feature layer (conv-type) nor upstream of one. Backbone residual Adds and the in-graph
Normalize feed later convs, so they are not head."""

from __future__ import annotations

from typing import Dict, Iterable, List, Set


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


def head_nodes(graph, outputs: Iterable[str], feature_ops: Iterable[str]) -> List[str]:
    """Names, in graph order, of the nodes `outputs` depend on that are neither a `feature_ops`
    node nor upstream of one. Needs unique node names."""
    producer = producers(graph)
    feature_ops = set(feature_ops)
    feeds_features = upstream((n for n in graph.node if n.op_type in feature_ops), producer)
    on_output_path = upstream((producer[o] for o in outputs if o in producer), producer)
    return [n.name for n in graph.node if n.name in on_output_path and n.name not in feeds_features]
