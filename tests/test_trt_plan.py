"""The TensorRT build plan (edgeano.runtime.trt_plan) for every supported TensorRT version, with each
version's real enum objects: the plans are made in a subprocess under
`../shared/tools/trt-api/trt-python VERSION` (the real bindings of 8.6.1/10.3/10.16/11.4, the
names-only 8.5.2 stand-in), nothing is built. The FP32-island layer selection runs on plain tuples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeano.runtime.trt_plan import fp32_layers

ROOT = Path(__file__).resolve().parent.parent
TRT_API = next((p for p in (ROOT.parent / "shared" / "tools" / "trt-api", Path("/work/shared/tools/trt-api"))
                if (p / "trt-python").is_file()), None)
VERSIONS = ("8.5.2", "8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")
DYN = (-1, 3, 32, 32)
HEAD = ("head/Sub", "head/Pow", "head/ReduceSum")

# case: BuildRequest keywords (trt_version added per version)
CASES = {
    "fp32": dict(artifact_precision="fp32", input_shape=DYN, max_batch=4),
    "fp32-tf32": dict(artifact_precision="fp32", input_shape=DYN, tf32=True),
    "fp16-flag": dict(artifact_precision="fp32", precision="fp16", input_shape=DYN),
    "fp16-onnx": dict(artifact_precision="fp16", input_shape=DYN),
    "int8-qdq": dict(artifact_precision="int8", input_shape=DYN, fp32_nodes=HEAD),
    "int8-qdq-no-head": dict(artifact_precision="int8", input_shape=DYN),
    "int8-calibrate": dict(artifact_precision="fp32", precision="int8", input_shape=DYN, calib_data=True, fp32_nodes=HEAD),
    "dla-fp16-onnx": dict(artifact_precision="fp16", input_shape=DYN, max_batch=2, dla_core=1),
    "opt-batch": dict(artifact_precision="fp32", input_shape=DYN, max_batch=8, opt_batch=4),
    "fixed-batch": dict(artifact_precision="fp32", input_shape=(2, 3, 32, 32), max_batch=2),
    "err-dla-fp32": dict(artifact_precision="fp32", input_shape=DYN, dla_core=0),
    "err-opt-above-max": dict(artifact_precision="fp32", input_shape=DYN, max_batch=2, opt_batch=3),
    "err-opt-fixed": dict(artifact_precision="fp32", input_shape=(1, 3, 32, 32), opt_batch=1),
    "err-dla-opt": dict(artifact_precision="fp16", input_shape=DYN, max_batch=4, opt_batch=1, dla_core=0),
}

# Run in the subprocess: every case's plan, by name, and whether each member is that version's enum object.
BODY = r"""
import json, sys
import tensorrt as trt
from edgeano.errors import EdgeanoError
from edgeano.runtime.trt_plan import BuildRequest, flag_name, plan_build

def real(members, enum):
    return all(m == getattr(enum, flag_name(m)) and type(m) is type(getattr(enum, flag_name(m))) for m in members)

out = {}
for name, kw in json.loads(sys.argv[1]).items():
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    try:
        p = plan_build(trt, BuildRequest(trt.__version__, **kw))
    except EdgeanoError as e:
        out[name] = {"error": str(e), "exit_code": e.exit_code}
        continue
    out[name] = dict(p.sidecar(), precision=p.precision, max_batch=p.max_batch, calibrate=p.calibrate,
                     calibration_shape=p.calibration_shape, device_type=None if p.device_type is None else flag_name(p.device_type),
                     real=real(p.network_flags, trt.NetworkDefinitionCreationFlag) and real(p.builder_flags + p.cleared_flags, trt.BuilderFlag)
                     and (p.device_type is None or p.device_type == trt.DeviceType.DLA))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def plans():
    if TRT_API is None:
        pytest.skip("trt-api tool (../shared/tools/trt-api) not found")
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    made = {}
    for v in VERSIONS:
        r = subprocess.run(["bash", str(TRT_API / "trt-python"), v, "-c", BODY, json.dumps(CASES)],
                           capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert r.returncode == 0, f"TensorRT {v}: {r.stderr[-2000:]}"
        made[v] = json.loads(r.stdout.strip().splitlines()[-1])
    return made


def family(version: str) -> str:
    return version.split(".")[0]


def ok(plans, version, case):
    p = plans[version][case]
    assert "error" not in p, (version, case, p)
    assert p["real"], (version, case, "flags are not this version's enum objects")
    return p


@pytest.mark.parametrize("version", VERSIONS)
def test_network_and_builder_flags(plans, version):
    fam = family(version)
    explicit = ["EXPLICIT_BATCH"] if fam == "8" else []
    p = ok(plans, version, "fp32")
    assert p["network_flags"] == explicit and p["builder_flags"] == [] and p["cleared_flags"] == ["TF32"]
    assert p["strongly_typed"] is (fam == "11") and p["fp32_islands"] == "none"
    assert ok(plans, version, "fp32-tf32")["cleared_flags"] == []  # --tf32: TF32 stays on

    p = plans[version]["fp16-flag"]
    if fam == "11":
        assert "strongly typed" in p["error"] and p["exit_code"] == 2
    else:
        p = ok(plans, version, "fp16-flag")
        assert p["builder_flags"] == ["FP16"] and p["cleared_flags"] == ["TF32"] and p["network_flags"] == explicit

    p = ok(plans, version, "fp16-onnx")
    assert p["how"] == "typed"
    if fam == "8":  # no strong typing: FP16 flag, the ONNX's FP32 layers pinned
        assert p["network_flags"] == explicit and p["builder_flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS"]
        assert p["fp32_islands"] == "typed" and not p["strongly_typed"]
    else:
        assert p["network_flags"] == (["STRONGLY_TYPED"] if fam == "10" else []) and p["builder_flags"] == []
        assert p["strongly_typed"] and p["fp32_islands"] == "none"


@pytest.mark.parametrize("version", VERSIONS)
def test_int8(plans, version):
    fam = family(version)
    p = ok(plans, version, "int8-qdq")
    if fam == "11":
        assert p["strongly_typed"] and p["builder_flags"] == [] and p["fp32_islands"] == "none"
        assert "run FP32" in " ".join(p["decisions"])
    else:  # weakly typed: the float stem may run FP16, the head stays FP32
        assert not p["strongly_typed"] and p["network_flags"] == (["EXPLICIT_BATCH"] if fam == "8" else [])
        assert p["builder_flags"] == ["INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"]
        assert p["fp32_islands"] == "named" and p["fp32_nodes"] == list(HEAD)
        assert ok(plans, version, "int8-qdq-no-head")["builder_flags"] == ["INT8"]
    assert not p["calibrate"] and p["cleared_flags"] == ["TF32"]

    p = plans[version]["int8-calibrate"]
    if fam == "11":
        assert "no on-device calibration" in p["error"]
    else:
        p = ok(plans, version, "int8-calibrate")
        assert p["calibrate"] and p["how"] == "calibrate" and p["calibration_shape"] == [8, 3, 32, 32]
        assert p["builder_flags"] == ["INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"] and p["fp32_islands"] == "named"


@pytest.mark.parametrize("version", VERSIONS)
def test_profiles_and_dla(plans, version):
    shape = [3, 32, 32]
    p = ok(plans, version, "fp32")
    assert p["profile"] == [[1] + shape, [1] + shape, [4] + shape] and p["max_batch"] == 4  # opt 1 unless asked
    assert ok(plans, version, "opt-batch")["profile"] == [[1] + shape, [4] + shape, [8] + shape]
    p = ok(plans, version, "fixed-batch")
    assert p["profile"] is None and p["max_batch"] == 2
    p = ok(plans, version, "dla-fp16-onnx")
    assert p["profile"] == [[2] + shape] * 3 and p["device_type"] == "DLA"  # DLA: one static shape
    assert p["builder_flags"][-1] == "GPU_FALLBACK" and "static" in " ".join(p["decisions"])
    for case, expected in (("err-dla-fp32", "DLA runs FP16 or INT8"), ("err-opt-above-max", "--opt-batch 3"),
                           ("err-opt-fixed", "fixed batch"), ("err-dla-opt", "static shape")):
        assert expected in plans[version][case]["error"] and plans[version][case]["exit_code"] == 2, (case, plans[version][case])


LAYERS = [("cast_in", "IDENTITY", ["HALF"]), ("conv1", "CONVOLUTION", ["HALF"]), ("head/Sub", "ELEMENTWISE", ["FLOAT"]),
          ("head/Sub_1", "SHUFFLE", ["FLOAT"]), ("head/Pow", "ELEMENTWISE", ["FLOAT"]), ("w", "CONSTANT", ["FLOAT"]),
          ("head/ReduceSum", "REDUCE", ["FLOAT"]), ("score_cast", "CAST", ["FLOAT"]), ("stem_2", "CONVOLUTION", ["FLOAT"])]


def test_fp32_islands_select_layers():
    assert fp32_layers(LAYERS, "none") == []
    # typed: every computing layer the network types FP32 (no constants, shapes, casts)
    assert fp32_layers(LAYERS, "typed") == ["head/Sub", "head/Sub_1", "head/Pow", "head/ReduceSum", "stem_2"]
    # named: the head nodes' layers, including a node's extra layer "head/Sub_1"
    assert fp32_layers(LAYERS, "named", HEAD) == ["head/Sub", "head/Sub_1", "head/Pow", "head/ReduceSum"]
    # ... unless "head/Sub_1" is a node of its own that is not in the head
    assert "head/Sub_1" not in fp32_layers(LAYERS, "named", HEAD, onnx_nodes=["head/Sub", "head/Sub_1"])
