"""`edgeano doctor`'s checks: what matters on a Jetson or GPU box, each with the command that fixes it.

    checks = run_checks()            # [Check(name, status, detail, fix, needed), ...]
    blocking(checks)                 # the checks the TensorRT path cannot do without that failed

Statuses: ok, warn (works, but not as it should on a device), missing, info. `needed` marks what
the TensorRT path needs (CUDA driver, TensorRT, pycuda, a GPU, a tiny engine that builds and runs);
the CLI exits non-zero when one of those is not ok. Torch-free; every probe is guarded, so a
broken install reports instead of crashing. The parsers (L4T release, OpenCV build info, nvpmodel)
are pure and tested on their text.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

JETPACK_OF_L4T = {35: "5", 36: "6"}  # R32 (JetPack 4) has TensorRT 8.2 and Python 3.6: not supported
FIX_TENSORRT_JETSON = ("sudo apt-get install -y python3-libnvinfer (JetPack) and a venv made with "
                       "--system-site-packages (jetson/README.md)")
FIX_TENSORRT_DESKTOP = "pip install tensorrt"
FIX_PYCUDA = ("export PATH=/usr/local/cuda/bin:$PATH CUDA_ROOT=/usr/local/cuda && pip install 'pycuda>=2022.1' "
              "(or bash jetson/setup.sh)")
FIX_DRIVER_JETSON = "sudo apt-get install -y nvidia-jetpack"
FIX_DRIVER_DESKTOP = "install the NVIDIA driver (nvidia-smi must list the GPU)"


@dataclass
class Check:
    name: str
    status: str  # ok, warn, missing, info
    detail: str
    fix: str = ""
    needed: bool = False  # the TensorRT path needs it


# -- pure parsers -----------------------------------------------------------------------------------
def parse_l4t(text: str) -> Optional[Dict[str, str]]:
    """/etc/nv_tegra_release ("# R36 (release), REVISION: 3.0, ...") -> {"l4t": "36.3.0", "jetpack": "6"}."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    major = int(m.group(1))
    return {"l4t": f"{major}.{m.group(2)}", "jetpack": JETPACK_OF_L4T.get(major, "unsupported")}


def opencv_gstreamer(build_info: str) -> Optional[bool]:
    """cv2.getBuildInformation() -> True/False for its "GStreamer: YES/NO" line, None when absent."""
    m = re.search(r"^\s*GStreamer:\s*(\S+)", build_info or "", re.M)
    return None if not m else m.group(1).upper().startswith("YES")


def parse_nvpmodel(text: str) -> Optional[str]:
    """`nvpmodel -q` -> the mode ("MAXN", "15W", ...)."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    return m.group(1) if m else None


def cuda_version(code: int) -> str:
    """12020 -> "12.2" (cuDriverGetVersion / cudaRuntimeGetVersion encoding)."""
    return f"{code // 1000}.{(code % 1000) // 10}"


# -- probes -----------------------------------------------------------------------------------------
def _l4t() -> Check:
    path = Path("/etc/nv_tegra_release")
    info = parse_l4t(path.read_text(errors="replace")) if path.is_file() else None
    if info is None:
        return Check("L4T / JetPack", "info", "not a Jetson (no /etc/nv_tegra_release): a desktop or x86 GPU box")
    if info["jetpack"] == "unsupported":
        return Check("L4T / JetPack", "warn", f"L4T R{info['l4t']}: edgeano supports JetPack 5.1 (R35) and 6 (R36)",
                     "flash JetPack 5.1 or 6 (SDK Manager)")
    return Check("L4T / JetPack", "ok", f"L4T R{info['l4t']} (JetPack {info['jetpack']})")


def _on_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file()


def _cuda_lib_version(names, fn: str) -> Optional[str]:
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int(0)
        if getattr(lib, fn)(ctypes.byref(v)) == 0 and v.value:
            return cuda_version(v.value)
    return None


def _cuda() -> List[Check]:
    jetson = _on_jetson()
    driver = _cuda_lib_version(["libcuda.so.1", "libcuda.so"], "cuDriverGetVersion")
    runtime = _cuda_lib_version(["libcudart.so", "libcudart.so.12", "libcudart.so.11.0"], "cudaRuntimeGetVersion")
    return [Check("CUDA driver", "ok" if driver else "missing", f"CUDA {driver}" if driver else "libcuda.so.1 not found",
                  "" if driver else (FIX_DRIVER_JETSON if jetson else FIX_DRIVER_DESKTOP), needed=True),
            Check("CUDA runtime", "ok" if runtime else "warn", f"CUDA {runtime}" if runtime else "libcudart.so not found",
                  "" if runtime else ("sudo apt-get install -y cuda-runtime-12-6 (or nvidia-jetpack)" if jetson
                                      else "install the CUDA runtime that matches your TensorRT"))]


def _tensorrt() -> Check:
    fix = FIX_TENSORRT_JETSON if _on_jetson() else FIX_TENSORRT_DESKTOP
    if os.environ.get("EDGEANO_NO_TENSORRT"):
        return Check("TensorRT", "missing", "disabled by EDGEANO_NO_TENSORRT", "unset EDGEANO_NO_TENSORRT", needed=True)
    try:
        import tensorrt as trt
    except ImportError as e:
        return Check("TensorRT", "missing", f"not installed ({str(e).splitlines()[0][:100]})", fix, needed=True)
    from edgeano.runtime.trt_plan import trt_version_tuple

    version = trt_version_tuple(trt.__version__)
    if version < (8, 5):
        return Check("TensorRT", "missing", f"{trt.__version__}: edgeano needs 8.5 or later (execute_async_v3)", fix, needed=True)
    if version[0] > 11:
        return Check("TensorRT", "warn", f"{trt.__version__}: newer than edgeano is checked against (8.5, 8.6, 10.x, 11.x)")
    return Check("TensorRT", "ok", str(trt.__version__), needed=True)


def _pycuda_and_gpu() -> List[Check]:
    try:
        import pycuda
        import pycuda.driver as cuda
    except ImportError as e:
        return [Check("pycuda", "missing", f"not installed ({e.name} missing)", FIX_PYCUDA, needed=True),
                Check("GPU", "missing", "not checked (needs pycuda)", FIX_PYCUDA, needed=True)]
    checks = [Check("pycuda", "ok", getattr(pycuda, "VERSION_TEXT", "installed"), needed=True)]
    from edgeano.errors import EdgeanoError
    from edgeano.runtime.tensorrt import device_info

    try:
        dev = device_info(0)
        checks.append(Check("GPU", "ok", f"{dev['name']} (sm {dev['compute_capability']}), {cuda.Device.count()} device(s)",
                            needed=True))
    except EdgeanoError as e:
        checks.append(Check("GPU", "missing", str(e), FIX_DRIVER_JETSON if _on_jetson() else FIX_DRIVER_DESKTOP, needed=True))
    return checks


def _dla() -> Check:
    try:
        import tensorrt as trt

        from edgeano.runtime.tensorrt import _Logger

        n = trt.Builder(_Logger.get(trt)).num_DLA_cores
    except Exception as e:  # noqa: BLE001 - no TensorRT / no GPU: reported above
        return Check("DLA cores", "info", f"not checked ({type(e).__name__})")
    return Check("DLA cores", "info", f"{n} (edgeano build --dla 0..{n - 1})" if n else "0 (DLA is on Xavier and Orin AGX/NX)")


def _opencv() -> Check:
    try:
        import cv2
    except ImportError as e:
        return Check("OpenCV", "missing", f"not installed ({e.name})", "sudo apt-get install -y python3-opencv (JetPack's)")
    gst = opencv_gstreamer(cv2.getBuildInformation())
    if gst:
        return Check("OpenCV GStreamer", "ok", f"OpenCV {cv2.__version__}: GStreamer YES (csi://, RTSP)")
    if not _on_jetson():
        return Check("OpenCV GStreamer", "info", f"OpenCV {cv2.__version__}: no GStreamer (files, USB cameras and RTSP "
                     "through FFmpeg work; GStreamer pipelines do not)")
    return Check("OpenCV GStreamer", "warn", f"OpenCV {cv2.__version__} from {Path(cv2.__file__).parent}: no GStreamer "
                 "(csi:// and hardware RTSP will not open)",
                 "pip uninstall -y opencv-python opencv-python-headless (keep JetPack's OpenCV; bash jetson/setup.sh)")


def _cameras() -> Check:
    found = sorted(glob.glob("/dev/video*"))
    if not found:
        return Check("cameras", "warn", "no /dev/video* (USB camera unplugged? CSI: systemctl status nvargus-daemon)",
                     "ls /dev/video*; v4l2-ctl --list-devices")
    return Check("cameras", "ok", ", ".join(found[:6]) + (f" (+{len(found) - 6})" if len(found) > 6 else ""))


def _power() -> Check:
    exe = shutil.which("nvpmodel")
    if not exe:
        return Check("power mode", "info", "no nvpmodel (not a Jetson)")
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("power mode", "warn", f"nvpmodel -q failed ({type(e).__name__})", "sudo nvpmodel -q")
    mode = parse_nvpmodel(out)
    return Check("power mode", "info", f"{mode} (benchmark with sudo jetson_clocks; sudo nvpmodel -m 0 for MAXN)" if mode
                 else "unknown", "" if mode else "sudo nvpmodel -q")


def _tiny_engine() -> Check:
    """Build the tiny model into an engine and run it: the whole TensorRT path, end to end."""
    import numpy as np

    from edgeano.errors import EdgeanoError
    from edgeano.runtime.engine import Engine
    from edgeano.runtime.tiny_model import tiny_onnx
    from edgeano.runtime.trt_build import build_engine

    with tempfile.TemporaryDirectory(prefix="edgeano-doctor-") as tmp:
        try:
            onnx_path = tiny_onnx(Path(tmp) / "tiny.onnx", batch="N")
            side = build_engine(onnx_path, Path(tmp) / "tiny.fp32.engine", max_batch=2)
            with Engine.load(Path(tmp) / "tiny.fp32.engine") as eng:
                got = eng.score([np.full((20, 20, 3), v, np.uint8) for v in (50, 200)]).scores
        except (EdgeanoError, ImportError, RuntimeError, OSError) as e:
            return Check("tiny engine", "missing", f"build or run failed: {str(e).splitlines()[0][:160]}",
                         "read the TensorRT lines above; docs/tensorrt.md", needed=True)
    if not np.allclose(got, [50 / 255, 200 / 255], atol=1e-3):
        return Check("tiny engine", "missing", f"wrong answer {got.tolist()}", "report it with `edgeano doctor` output", needed=True)
    return Check("tiny engine", "ok", f"built and ran ({side['tensorrt']['build_seconds']} s build, TensorRT "
                 f"{side['tensorrt']['version']})", needed=True)


def run_checks(engine: bool = True, progress: Optional[Callable[[str], None]] = None) -> List[Check]:
    """All checks, in screen order; the tiny engine only where TensorRT, pycuda and a GPU are ok."""
    checks = [_l4t(), Check("Python", "ok", sys.version.split()[0])]
    checks += _cuda()
    checks.append(_tensorrt())
    checks += _pycuda_and_gpu()
    checks.append(_dla())
    checks += [_opencv(), _cameras(), _power()]
    ready = all(c.status == "ok" for c in checks if c.name in ("TensorRT", "pycuda", "GPU"))
    if engine and ready:
        if progress:
            progress("building and running a tiny engine ...")
        checks.append(_tiny_engine())
    elif engine:
        checks.append(Check("tiny engine", "missing", "not tried: TensorRT, pycuda or the GPU is missing (above)", needed=True))
    return checks


def blocking(checks: List[Check]) -> List[Check]:
    """The checks the TensorRT path needs that are not ok."""
    return [c for c in checks if c.needed and c.status != "ok"]


def as_dicts(checks: List[Check]) -> List[Dict]:
    return [asdict(c) for c in checks]
