#!/usr/bin/env bash
# Install edgeano's runtime on a Jetson (JetPack 5.1.x or 6.x) without torch, on top of JetPack's
# TensorRT and OpenCV (the one with GStreamer, for CSI cameras). Safe to run again: every step
# checks what is already there.
#
#   sudo apt-get install -y git && git clone <this repo> edgeano && cd edgeano
#   bash jetson/setup.sh                 # runtime in /opt/edgeano/venv
#   bash jetson/setup.sh --service       # + systemd unit (edit /etc/edgeano/edgeano.env first)
#
# Environment: EDGEANO_VENV (default /opt/edgeano/venv), EDGEANO_SKIP_APT=1 (no apt-get),
# EDGEANO_SKIP_PYCUDA=1 (ONNX Runtime only), EDGEANO_ALLOW_NON_JETSON=1 (try on a non-Jetson box).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGEANO_VENV:-/opt/edgeano/venv}"
INSTALL_SERVICE=0
for arg in "$@"; do
    case "$arg" in
        --service) INSTALL_SERVICE=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (use --service or --help)" >&2; exit 2 ;;
    esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- 1. Which JetPack? --------------------------------------------------------------------------
L4T_MAJOR=""
if [ -f /etc/nv_tegra_release ]; then
    # "# R36 (release), REVISION: 4.0, ..." -> 36
    L4T_MAJOR="$(sed -n 's/^# R\([0-9]*\).*/\1/p' /etc/nv_tegra_release)"
fi
case "$L4T_MAJOR" in
    35) JETPACK=5 ;;
    36) JETPACK=6 ;;
    "") [ "${EDGEANO_ALLOW_NON_JETSON:-0}" = "1" ] || die "not a Jetson (/etc/nv_tegra_release missing); set EDGEANO_ALLOW_NON_JETSON=1 to try anyway"
        JETPACK=0 ;;
    *) die "L4T R$L4T_MAJOR is not supported: edgeano supports JetPack 5.1 (L4T R35) and JetPack 6 (L4T R36)" ;;
esac
say "L4T R${L4T_MAJOR:-none} -> JetPack ${JETPACK}"

# --- 2. System packages: Python, build tools, JetPack's TensorRT bindings and OpenCV --------------
missing_debs() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$pkg"
    done
}
if [ "${EDGEANO_SKIP_APT:-0}" != "1" ]; then
    WANT=(python3-venv python3-pip python3-dev build-essential)
    if [ "$JETPACK" != "0" ]; then
        # python3-libnvinfer: TensorRT's Python bindings; libopencv-python: NVIDIA's OpenCV build (GStreamer: YES)
        WANT+=(python3-libnvinfer libopencv-python)
    fi
    read -r -a TODO <<< "$(missing_debs "${WANT[@]}")"
    if [ "${#TODO[@]}" -gt 0 ]; then
        say "apt-get install ${TODO[*]}"
        $SUDO apt-get update
        $SUDO apt-get install -y --no-install-recommends "${TODO[@]}"
    else
        say "system packages already installed"
    fi
fi

# --- 3. A venv that sees the system's tensorrt and cv2 ------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV (--system-site-packages: JetPack's tensorrt and cv2 stay visible)"
    $SUDO mkdir -p "$(dirname "$VENV")"
    $SUDO chown "$(id -u):$(id -g)" "$(dirname "$VENV")"
    python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

# --- 4. edgeano without its pip dependencies, then the runtime ones by hand -------------------------
# --no-deps keeps pip from pulling opencv-python over JetPack's OpenCV (pip's has no GStreamer).
# numpy < 2: JetPack's cv2 and tensorrt are built against numpy 1.x.
say "installing edgeano (no torch, no pip OpenCV) into $VENV"
"$PY" -m pip install --quiet --upgrade "pip<25"
# pip may print "edgeano requires opencv-python-headless, which is not installed": expected, that is the point
"$PY" -m pip install --quiet --no-deps "$REPO"
if [ "$PYVER" = "3.8" ]; then  # JetPack 5: Python 3.8; the last releases that support it
    "$PY" -m pip install --quiet "numpy>=1.21,<1.25" "click>=8.0,<8.2" "onnx>=1.14,<1.17" "onnxruntime>=1.15,<1.20" "tqdm>=4.60"
else
    "$PY" -m pip install --quiet "numpy>=1.21,<2" "click>=8.0" "onnx>=1.14" "onnxruntime>=1.15" "tqdm>=4.60"
fi
for wheel in opencv-python opencv-python-headless opencv-contrib-python; do
    if "$PY" -m pip show --quiet "$wheel" >/dev/null 2>&1; then
        say "removing pip's $wheel from the venv: it would hide JetPack's OpenCV (no GStreamer, no CSI)"
        "$PY" -m pip uninstall --quiet -y "$wheel"
    fi
done

# --- 5. pycuda (TensorRT buffers), built against JetPack's CUDA -------------------------------------
if [ "${EDGEANO_SKIP_PYCUDA:-0}" = "1" ]; then
    say "skipping pycuda (EDGEANO_SKIP_PYCUDA=1): --backend onnxruntime only"
elif ! "$PY" -c "import pycuda.driver" >/dev/null 2>&1; then
    if [ -d /usr/local/cuda/bin ]; then
        say "building pycuda against /usr/local/cuda (takes a few minutes)"
        export PATH="/usr/local/cuda/bin:$PATH" CUDA_ROOT=/usr/local/cuda
        export CPATH="/usr/local/cuda/include:${CPATH:-}" LIBRARY_PATH="/usr/local/cuda/lib64:${LIBRARY_PATH:-}"
        "$PY" -m pip install --quiet "pycuda>=2022.1"
    else
        say "no /usr/local/cuda: skipping pycuda (ONNX Runtime only)"
    fi
fi

# --- 6. Check what we have -----------------------------------------------------------------------
say "checks"
"$PY" - <<'EOF'
import sys
sys.modules["torch"] = None  # the runtime must not need torch
try:
    import cv2
except ImportError:
    sys.exit("error: cv2 is not importable: install JetPack's OpenCV (sudo apt-get install libopencv-python)")
import edgeano.cli.run  # noqa: F401
gst = [l.split(":", 1)[1].strip() for l in cv2.getBuildInformation().splitlines() if l.strip().startswith("GStreamer:")]
print(f"opencv {cv2.__version__} from {cv2.__file__}; GStreamer: {gst[0] if gst else 'NO'}")
if not gst or not gst[0].startswith("YES"):
    print("warning: this OpenCV has no GStreamer: csi:// cameras will not open (is pip's opencv-python shadowing JetPack's?)")
try:
    import tensorrt
    print(f"tensorrt {tensorrt.__version__}")
except ImportError:
    print("warning: tensorrt is not importable: only --backend onnxruntime will work")
EOF
"$VENV/bin/edgeano" --version

# --- 7. Optional: the systemd service --------------------------------------------------------------
if [ "$INSTALL_SERVICE" = "1" ]; then
    say "installing the edgeano service"
    id -u edgeano >/dev/null 2>&1 || $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin --groups video edgeano
    $SUDO mkdir -p /etc/edgeano
    if [ ! -f /etc/edgeano/edgeano.env ]; then
        $SUDO install -m 0644 "$REPO/jetson/edgeano.env" /etc/edgeano/edgeano.env
        echo "edit /etc/edgeano/edgeano.env (model, source), then: sudo systemctl restart edgeano"
    fi
    sed "s#/opt/edgeano/venv#$VENV#g" "$REPO/jetson/edgeano.service" | $SUDO tee /etc/systemd/system/edgeano.service >/dev/null
    $SUDO systemctl daemon-reload
    $SUDO systemctl enable edgeano.service
fi

say "done. next: $VENV/bin/edgeano build model.onnx --precision fp16 && $VENV/bin/edgeano run --model model.fp16.engine --camera 0"
