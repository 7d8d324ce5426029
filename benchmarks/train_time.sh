#!/usr/bin/env bash
# `edgeano train --model gaussian` on MTD, wall time: the trainer before issue 14 (REV, default
# 72b907d: PyTorch feature pass, test split scored at train time) against this checkout with
# --map none (the same score-only model: ONNX Runtime feature pass, no test scoring), alternating
# rounds; then this checkout's default (with the anomaly map) once. Usage:
#   bash benchmarks/train_time.sh [ROUNDS] [REV]     (from the repository root, .venv made)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}; REV=${2:-72b907d}
DATA=${EDGEANO_MTD:-$ROOT/../shared/data/mtd}
WORK=$(mktemp -d /tmp/edgeano-train-time.XXXX)
git -C "$ROOT" worktree add -f "$WORK/old" "$REV" >/dev/null 2>&1
trap 'git -C "$ROOT" worktree remove --force "$WORK/old" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
timed() {  # label checkout args...: one training run, its wall seconds and the load average
  local label=$1 tree=$2; shift 2
  local t0; t0=$(date +%s.%N)
  (cd "$tree" && PYTHONPATH="$tree" "$ROOT/.venv/bin/python" -m edgeano.cli.main train --model gaussian --data "$DATA" \
      --out "$WORK/runs" --name "$label" "$@" >"$WORK/$label.log" 2>&1)
  echo "$label $(echo "$(date +%s.%N) - $t0" | bc) s load $(cut -d' ' -f1 /proc/loadavg)"
}
for r in $(seq "$ROUNDS"); do
  timed "before-$r" "$WORK/old"
  timed "now-map-none-$r" "$ROOT" --map none
done
timed "now-default-map" "$ROOT"
