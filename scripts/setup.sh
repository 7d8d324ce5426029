#!/usr/bin/env bash
# Create .venv and install edgeano with training, test and OpenVINO extras. Idempotent.
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
.venv/bin/python -m pip install -q -e '.[train,test,openvino]'  # openvino: its runner's tests run, not skip
echo "edgeano installed in .venv ($(.venv/bin/python -c 'import edgeano, torch; print("edgeano", edgeano.__version__, "torch", torch.__version__)'))"
