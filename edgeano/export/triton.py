"""`edgeano export --format triton`: a model repository a stock Triton Inference Server loads.

    REPO/NAME/config.pbtxt
    REPO/NAME/1/model.onnx      platform "onnxruntime_onnx"   (or model.plan, "tensorrt_plan")

The config has `max_batch_size` with dims without the batch, dynamic batching, one instance group,
and edgeano's metadata (threshold, preprocessing, map normalisation: the artifact's JSON document)
under `parameters["edgeano"]`, which is what `edgeano run --server` reads. The input is the
artifact's own: float32 NCHW in [0, 1] (mean/std and any contrast step are inside the graph).

Every config written is parsed back with protobuf's text format against Triton's model config
schema (`tritonclient.grpc.model_config_pb2`) before it replaces an earlier one.
Torch-free: it reads only the artifact's metadata and graph signature.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edgeano.artifact import METADATA_KEY, read_onnx_metadata
from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
from edgeano.fileio import atomic_path, write_text
from edgeano.runtime.tensorrt import read_sidecar

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 2: "TYPE_UINT8", 3: "TYPE_INT8", 7: "TYPE_INT64", 6: "TYPE_INT32"}


def _q(text: str) -> str:
    """A protobuf text-format string literal, escaped as protobuf itself escapes (non-ASCII as octal
    UTF-8 bytes, which every protobuf text parser reads)."""
    from google.protobuf import text_encoding

    return '"' + text_encoding.CEscape(text.encode("utf-8"), as_utf8=False) + '"'


def onnx_signature(path: Path) -> Tuple[List[Tuple[str, str, List[int]]], List[Tuple[str, str, List[int]]]]:
    """(inputs, outputs) as (name, Triton data type, dims with -1 for dynamic) from the ONNX graph."""
    from edgeano.artifact import load_onnx

    graph = load_onnx(path, load_weights=False).graph

    def sig(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append((v.name, ONNX_TO_TRITON.get(t.elem_type, "TYPE_FP32"), dims))
        return out

    return sig(graph.input), sig(graph.output)


def _io_block(kind: str, items, reshape_scalars: bool) -> str:
    entries = []
    for name, dtype, dims in items:
        body = [f"    name: {_q(name)}", f"    data_type: {dtype}"]
        if not dims and reshape_scalars:  # one value per frame ([batch] in the graph): Triton needs a dim
            body += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
        else:
            body.append(f"    dims: [ {', '.join(map(str, dims))} ]")
        entries.append("  {\n" + "\n".join(body) + "\n  }")
    return f"{kind} [\n" + ",\n".join(entries) + "\n]"


def config_text(name: str, platform: str, max_batch: int, inputs, outputs, meta: Dict, max_queue_delay_us: int,
                instance_kind: str, instances: int = 1) -> str:
    """config.pbtxt for a batching model: `inputs`/`outputs` dims are without the batch."""
    meta_json = json.dumps(meta, sort_keys=True)
    parts = [
        "# Written by edgeano export --format triton; edgeano's metadata is parameters[\"edgeano\"].",
        f"name: {_q(name)}",
        f"platform: {_q(platform)}",
        f"max_batch_size: {max_batch}",
        _io_block("input", inputs, False),
        _io_block("output", outputs, True),
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}",
        f"instance_group [\n  {{\n    count: {instances}\n    kind: {instance_kind}\n  }}\n]",
        f"parameters {{\n  key: {_q(METADATA_KEY)}\n  value: {{ string_value: {_q(meta_json)} }}\n}}",
    ]
    return "\n".join(parts) + "\n"


def parse_config(text: str, source: str = "config.pbtxt"):
    """Parse config.pbtxt against Triton's schema (tritonclient's model_config_pb2); one line on error."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise EdgeanoError(f"checking a Triton config needs tritonclient ({e.name} missing): pip install 'edgeano[triton]'")
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise EdgeanoError(f"{source}: not a valid Triton model config ({e})", EXIT_ERROR)


def _artifact_io(artifact: Path, meta: Dict):
    """Graph signature of an ONNX, or of the ONNX an engine was built from (its sidecar names it)."""
    if artifact.suffix.lower() in ENGINE_SUFFIXES:
        onnx_path = Path(meta["tensorrt"].get("onnx", ""))
        if not onnx_path.is_file():
            raise EdgeanoError(f"{artifact}: its sidecar names {onnx_path} as the ONNX it was built from, which is not there; "
                               "the repository config needs that ONNX's signature", EXIT_USAGE)
        return onnx_signature(onnx_path)
    return onnx_signature(artifact)


def write_repository(artifact, repo, name: Optional[str] = None, max_batch: int = 8, max_queue_delay_us: int = 500) -> Path:
    """Write REPO/NAME/{config.pbtxt, 1/model.onnx|model.plan} for `artifact` (.onnx with a dynamic
    batch, or a TensorRT engine with its sidecar). Returns the config's path."""
    artifact, repo = Path(artifact), Path(repo)
    is_plan = artifact.suffix.lower() in ENGINE_SUFFIXES
    meta = read_sidecar(artifact) if is_plan else read_onnx_metadata(artifact)
    name = name or meta.get("model", "model")
    inputs, outputs = _artifact_io(artifact, meta)
    if len(inputs) != 1 or len(inputs[0][2]) != 4:
        raise EdgeanoError(f"{artifact}: expected one NCHW input, got {inputs}", EXIT_USAGE)
    graph_batch = inputs[0][2][0]
    if is_plan:
        limit = int(meta["tensorrt"].get("max_batch", 1))
    elif graph_batch == -1:
        limit = max_batch
    else:
        raise EdgeanoError(f"{artifact} has a fixed batch of {graph_batch}; Triton's dynamic batching needs "
                           "`edgeano export --dynamic-batch` (export --format triton does that itself)", EXIT_USAGE)
    mb = min(max_batch, limit)
    wanted = set(meta["outputs"])
    strip = lambda items: [(n, t, d[1:]) for n, t, d in items]  # noqa: E731 - dims without the batch
    text = config_text(name, "tensorrt_plan" if is_plan else "onnxruntime_onnx", mb, strip(inputs),
                       strip([o for o in outputs if o[0] in wanted]), meta, max_queue_delay_us, "KIND_GPU" if is_plan else "KIND_AUTO")
    cfg = parse_config(text, f"{repo / name / 'config.pbtxt'}")
    if cfg.max_batch_size != mb or json.loads(cfg.parameters[METADATA_KEY].string_value) != meta:
        raise EdgeanoError("internal: the Triton config does not read back as written", EXIT_ERROR)
    model_dir = repo / name
    with atomic_path(model_dir / "1" / ("model.plan" if is_plan else "model.onnx")) as tmp:
        shutil.copyfile(artifact, tmp)
    return write_text(model_dir / "config.pbtxt", text)
