"""`edgeano doctor`: here (no TensorRT, no GPU) it exits non-zero and says why; its parsers on real text."""

from __future__ import annotations

import json
import subprocess
import sys

from edgeano.runtime.doctor import cuda_version, opencv_gstreamer, parse_l4t, parse_nvpmodel


def test_doctor_without_tensorrt_exits_nonzero_with_the_reason(tmp_path):
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['edgeano', 'doctor', '--json', sys.argv[1]]; "
            "from edgeano.cli.main import main; main()")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.json")], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "EDGEANO_NO_TENSORRT": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    names = [ln.split()[1] for ln in lines if ln.strip() and not ln.strip().startswith(("fix:", "wrote"))]
    for name in ("L4T", "Python", "CUDA", "TensorRT", "pycuda", "GPU", "DLA", "OpenCV", "cameras", "power", "tiny"):
        assert name in names, (name, r.stdout)
    trt = next(ln for ln in lines if " TensorRT " in ln)
    assert trt.split()[0] == "MISSING" and "EDGEANO_NO_TENSORRT" in trt
    assert "fix: unset EDGEANO_NO_TENSORRT" in r.stdout
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "the TensorRT path cannot work here" in err[0] and "TensorRT" in err[0] and "Traceback" not in r.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["tensorrt_path_works"] is False and any(c["name"] == "TensorRT" and c["needed"] for c in report["checks"])


def test_parsers():
    assert parse_l4t("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64") == \
        {"l4t": "36.3.0", "jetpack": "6"}
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref")["jetpack"] == "5"
    assert parse_l4t("# R32 (release), REVISION: 7.1")["jetpack"] == "unsupported" and parse_l4t("") is None
    assert opencv_gstreamer("  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   YES (1.20.3)\n")
    assert opencv_gstreamer("    GStreamer:                   NO\n") is False and opencv_gstreamer("") is None
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == "MAXN" and parse_nvpmodel("") is None
    assert cuda_version(12020) == "12.2" and cuda_version(11040) == "11.4"
