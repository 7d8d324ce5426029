"""`edgeano export --format deepstream --out DIR/`: an nvinfer (Gst-nvinfer) config for the artifact.

    DIR/model.onnx                  the artifact (dynamic batch)
    DIR/config_infer_edgeano.txt    [property] group for nvinfer
    DIR/edgeano.json                the artifact's metadata (threshold, ...) for the app

jetson/deepstream/edgeano_deepstream.py runs it: nvinfer attaches the raw output tensors
(network-type=100 "other", output-tensor-meta=1) and a probe turns them into edgeano's events.

Normalisation: nvinfer feeds the network y = net-scale-factor * (x - offsets[c]) for 8-bit pixels x.
An edgeano graph takes x / 255 in [0, 1] and does mean/std (and any per-image contrast step)
inside itself, so net-scale-factor is the artifact's input.scale and every offset is 0; folding
mean/std into offsets as well would normalise twice. `check_config` verifies this from the numbers,
and every key against nvinfer's documented keys (DeepStream's gstnvinfer_property_parser.h).
Scaling differs from OpenCV's (nvinfer scales on the GPU or VIC): re-check the threshold on the line.
"""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional

from edgeano.artifact import preprocess_of, read_onnx_metadata
from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
from edgeano.fileio import atomic_path, write_text

CONFIG_NAME = "config_infer_edgeano.txt"
META_NAME = "edgeano.json"
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # NvDsInferNetworkMode
COLOR_FORMATS = {"RGB": 0, "BGR": 1, "GRAY": 2}  # model-color-format
# scaling-filter (NvBufSurfTransformInter): 0 nearest, 1 bilinear, 2 Algo1 (GPU cubic), 3 Algo2 (GPU super-sampling, the
# nearest to OpenCV's INTER_AREA when shrinking), 4 Algo3, 5 Algo4, 6 default
SCALING_FILTERS = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3}


def _int(lo: int, hi: int) -> Callable[[str], bool]:
    return lambda v: v.strip().lstrip("-").isdigit() and lo <= int(v) <= hi


def _float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _bool(v: str) -> bool:
    return v.strip().lower() in ("0", "1", "true", "false")


def _list(item: Callable[[str], bool], n: Optional[int] = None) -> Callable[[str], bool]:
    return lambda v: all(item(p) for p in v.strip().strip(";").split(";")) and (n is None or len(v.strip().strip(";").split(";")) == n)


def _path(v: str) -> bool:
    return bool(v.strip())


# The [property] keys of Gst-nvinfer as documented (DeepStream 6.x/7.x gstnvinfer_property_parser.h and the
# Gst-nvinfer plugin guide), with the value each takes. A key outside this table is a typo nvinfer ignores.
NVINFER_KEYS: Dict[str, Callable[[str], bool]] = {
    "gpu-id": _int(0, 63), "gie-unique-id": _int(1, 1 << 30), "process-mode": _int(1, 2), "interval": _int(0, 1 << 30),
    "output-tensor-meta": _bool, "batch-size": _int(1, 1024), "network-mode": _int(0, 2), "network-type": lambda v: v.strip() in ("0", "1", "2", "3", "100"),
    "onnx-file": _path, "model-engine-file": _path, "int8-calib-file": _path, "workspace-size": _int(0, 1 << 30),
    "infer-dims": _list(_int(1, 1 << 16), 3), "model-color-format": _int(0, 2), "net-scale-factor": _float,
    "offsets": _list(_float), "mean-file": _path, "maintain-aspect-ratio": _bool, "symmetric-padding": _bool,
    "scaling-filter": _int(0, 6), "scaling-compute-hw": _int(0, 2), "network-input-order": _int(0, 1),
    "output-blob-names": _list(_path), "labelfile-path": _path, "enable-dla": _bool, "use-dla-core": _int(0, 3),
    "tensor-meta-pool-size": _int(1, 1024), "secondary-reinfer-interval": _int(0, 1 << 30), "force-implicit-batch-dim": _bool,
    "custom-lib-path": _path, "cluster-mode": _int(0, 4), "num-detected-classes": _int(0, 1 << 16),
}
REQUIRED = ("onnx-file", "model-engine-file", "network-mode", "infer-dims", "batch-size", "network-type", "output-tensor-meta",
            "net-scale-factor", "offsets", "model-color-format", "output-blob-names", "gie-unique-id", "process-mode")


def engine_file_name(onnx_name: str, batch: int, precision: str, gpu_id: int = 0) -> str:
    """Where nvinfer serialises the engine it builds from onnx-file; naming it reuses it on the next start."""
    return f"{onnx_name}_b{batch}_gpu{gpu_id}_{precision}.engine"


def nvinfer_properties(meta: Dict, onnx_name: str, batch: int, engine_name: Optional[str] = None) -> Dict[str, str]:
    pre = preprocess_of(meta)
    precision = meta.get("precision", "fp32")
    if precision not in NETWORK_MODES:
        raise EdgeanoError(f"precision {precision!r} has no nvinfer network-mode", EXIT_USAGE)
    return {
        "gpu-id": "0", "gie-unique-id": "1", "process-mode": "1",
        "onnx-file": onnx_name, "model-engine-file": engine_name or engine_file_name(onnx_name, batch, precision),
        "network-mode": str(NETWORK_MODES[precision]), "batch-size": str(batch),
        "infer-dims": ";".join(map(str, pre.input_shape)), "network-input-order": "0",
        "model-color-format": str(COLOR_FORMATS[pre.color]),
        "net-scale-factor": repr(float(pre.scale)), "offsets": ";".join(["0"] * pre.channels),
        "maintain-aspect-ratio": "0", "scaling-filter": str(SCALING_FILTERS[pre.interpolation]),
        "network-type": "100", "output-tensor-meta": "1", "output-blob-names": ";".join(meta["outputs"]),
    }


def config_text(props: Dict[str, str], meta: Dict) -> str:
    pre = preprocess_of(meta)
    head = [f"# edgeano {meta.get('model', '?')} for Gst-nvinfer, written by `edgeano export --format deepstream`.",
            f"# The graph normalises itself (mean {list(pre.mean)}, std {list(pre.std)}, contrast {pre.contrast}):",
            "# nvinfer only scales 8-bit pixels to [0, 1] (net-scale-factor = 1/255, offsets 0).",
            f"# Threshold {meta['threshold']['value']:.6g} ({meta['threshold'].get('method', '?')}): see {META_NAME}.", "[property]"]
    return "\n".join(head + [f"{k}={v}" for k, v in props.items()]) + "\n"


def check_config(text: str, meta: Dict, source: str = CONFIG_NAME) -> List[str]:
    """Problems with an nvinfer config for `meta` (empty list = none): unknown keys, values outside
    nvinfer's documented ranges, and input handling that does not reproduce edgeano's Preprocess."""
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    try:
        cp.read_string(text, source)
    except configparser.Error as e:
        return [f"not a key file: {e}"]
    if not cp.has_section("property"):
        return ["no [property] group"]
    props = dict(cp.items("property"))
    problems = [f"unknown nvinfer key {k!r}" for k in props if k not in NVINFER_KEYS]
    problems += [f"{k}={v!r} is not a valid value" for k, v in props.items() if k in NVINFER_KEYS and not NVINFER_KEYS[k](v)]
    problems += [f"{k} is missing" for k in REQUIRED if k not in props]
    if problems:
        return problems
    pre = preprocess_of(meta)
    if [int(d) for d in props["infer-dims"].split(";")] != list(pre.input_shape):
        problems.append(f"infer-dims {props['infer-dims']} is not the network input {pre.input_shape}")
    if int(props["model-color-format"]) != COLOR_FORMATS[pre.color]:
        problems.append(f"model-color-format {props['model-color-format']} is not {pre.color}")
    offsets = [float(o) for o in props["offsets"].split(";")]
    scale = float(props["net-scale-factor"])
    # what nvinfer feeds, y = scale * (x - offset[c]), against what the graph takes, x * input.scale
    worst = max(abs(scale * (x - offsets[min(c, len(offsets) - 1)]) - x * pre.scale)
                for x in (0, 1, 128, 255) for c in range(pre.channels))
    if len(offsets) != pre.channels or worst > 1e-6:
        problems.append(f"net-scale-factor {scale} with offsets {offsets} does not give the graph x*{pre.scale:.6g} "
                        f"(off by {worst:.3g}); the graph normalises mean/std itself")
    if props["network-type"] != "100" or props["output-tensor-meta"] not in ("1", "true"):
        problems.append("network-type must be 100 and output-tensor-meta 1: the app reads the raw score tensor")
    missing = [o for o in meta["outputs"] if o not in props["output-blob-names"].split(";")]
    if missing:
        problems.append(f"output-blob-names lacks {', '.join(missing)}")
    if int(props["network-mode"]) != NETWORK_MODES.get(meta.get("precision", "fp32")):
        problems.append(f"network-mode {props['network-mode']} is not the artifact's precision {meta.get('precision')}")
    return problems


def write_deepstream(artifact, out_dir, batch: int = 1, engine: Optional[str] = None) -> Path:
    """DIR/{model.onnx, config_infer_edgeano.txt, edgeano.json} for an ONNX artifact; `engine` (an
    edgeano-built TensorRT engine of it) is copied beside it and named in model-engine-file."""
    artifact, out_dir = Path(artifact), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeanoError(f"--out {out_dir} is a file; give a folder for the DeepStream config", EXIT_USAGE)
    if batch < 1:
        raise EdgeanoError(f"--batch {batch}: must be >= 1", EXIT_USAGE)
    meta = read_onnx_metadata(artifact)
    if batch > 1 and not meta.get("dynamic_batch"):
        raise EdgeanoError(f"{artifact} has a fixed batch of 1; nvinfer batch-size {batch} needs `edgeano export --dynamic-batch`", EXIT_USAGE)
    engine_name = "model.engine" if engine else None
    props = nvinfer_properties(meta, "model.onnx", batch, engine_name)
    text = config_text(props, meta)
    problems = check_config(text, meta)
    if problems:
        raise EdgeanoError(f"internal: the nvinfer config fails its own check: {'; '.join(problems)}", EXIT_ERROR)
    with atomic_path(out_dir / "model.onnx") as tmp:
        shutil.copyfile(artifact, tmp)
    if engine:
        with atomic_path(out_dir / engine_name) as tmp:
            shutil.copyfile(engine, tmp)
    write_text(out_dir / META_NAME, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return write_text(out_dir / CONFIG_NAME, text)
