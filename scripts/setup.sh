#!/usr/bin/env bash
# Create .venv and install edgeano with training, test, Triton-client, OpenVINO and line-sink extras; and
# .venv-serve, the environment `edgeano serve` runs in (edgeano[serve]: PyTriton pins numpy<2, so it gets its own;
# no torch there). EDGEANO_SERVE=0 skips .venv-serve (the server tests then skip). Idempotent.
# The line-sink tests also need Debian's mosquitto and chromium (installed here when run as root
# with apt-get; elsewhere those tests skip with the reason).
# EDGEANO_TORCH picks the torch requirement (default torch==2.13.0: the CPU build on machines that
# carry it; elsewhere set e.g. EDGEANO_TORCH="torch" or a CUDA wheel of your choice).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${EDGEANO_TORCH:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -e '.[train,test,triton,openvino,line,line-test]'  # openvino: its runner's tests run, not skip
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
  command -v chromium >/dev/null || missing="$missing chromium"
  if [ -n "$missing" ]; then
    echo "installing$missing (apt-get) for the line-sink tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >/dev/null 2>&1 \
      || echo "warning: apt-get could not install$missing; those tests will skip"
  fi
fi
if [ "${EDGEANO_SERVE:-1}" != 0 ]; then
  [ -x .venv-serve/bin/python ] || "$PY" -m venv .venv-serve
  .venv-serve/bin/python -m pip install -q --upgrade pip
  .venv-serve/bin/python -m pip install -q -e '.[serve]'
  echo "edgeano serve environment in .venv-serve ($(.venv-serve/bin/python -c 'import pytriton, numpy; print("nvidia-pytriton", __import__("importlib.metadata").metadata.version("nvidia-pytriton"), "numpy", numpy.__version__)'))"
fi
echo "edgeano installed in .venv ($(.venv/bin/python -c 'import edgeano, torch; print("edgeano", edgeano.__version__, "torch", torch.__version__)'))"
