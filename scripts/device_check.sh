#!/usr/bin/env bash
# One prepared check of edgeano's TensorRT path on a device (Jetson or GPU box): what someone with a
# Jetson runs once and sends back (one JSON report).
#
#   On a workstation with torch (edgeano[train]), from the repo:
#     bash scripts/device_check.sh prepare DIR       # tiny Gaussian (128 px) + GANomaly (64 px) on bundled
#                                                    # data: ONNX fp32/fp16/int8 + golden files, ~2 min on CPU
#     scp -r DIR jetson:                             # and the repo checkout (for tests/)
#   On the device (no torch needed):
#     bash scripts/device_check.sh run DIR [REPORT]  # doctor; fp32/fp16/int8 engines of both models; edgeano
#                                                    # verify; pytest -m tensorrt; edgeano bench
#   A GPU box with torch does both:  bash scripts/device_check.sh all DIR
#
# REPORT (default DIR/device_check.json): doctor's checks, every step's exit code, time and log tail,
# each engine's build plan and time, its verify result (per output, vs PyTorch's golden outputs),
# its bench latency, and the pytest summary. Logs: DIR/logs/. Exit 0 when every step passed.
# Environment: EDGEANO (the edgeano command), PYTHON (its interpreter), BENCH_ITERS (default 200).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
mode="$1"
dir="$2"
report="${3:-$dir/device_check.json}"
models=(gaussian ganomaly)
precisions=(fp32 fp16 int8)

if [ -n "${EDGEANO:-}" ]; then edgeano="$EDGEANO"
elif [ -x "$root/.venv/bin/edgeano" ]; then edgeano="$root/.venv/bin/edgeano"
else edgeano="$(command -v edgeano || true)"; fi
[ -n "$edgeano" ] || { echo "device_check: no edgeano command (install it: jetson/README.md), or set EDGEANO" >&2; exit 2; }
py="${PYTHON:-$(dirname "$edgeano")/python}"
[ -x "$py" ] || py=python3

prepare() {
  mkdir -p "$dir"
  local data="$dir/data" runs="$dir/runs"
  "$py" -c 'import sys; from edgeano.data.synthetic import make_texture_dataset as m; m(sys.argv[1], n_train=80, n_test_good=20, n_test_bad=8, size=160, seed=0)' "$data"
  "$edgeano" train --model gaussian --data "$data" --img-size 128 --out "$runs" --name devcheck
  "$edgeano" train --model ganomaly --data "$data" --img-size 64 --epochs 5 --width 16 --out "$runs" --name devcheck
  for m in "${models[@]}"; do
    "$edgeano" export --model "$runs/$m/devcheck/weights/best.pt" --fp16 --int8 --data "$data" --num 64 \
      --out "$dir/$m/best.onnx" --no-build
  done
  echo "device_check: prepared $dir; copy it to the device and run: bash scripts/device_check.sh run $dir"
}

step() {  # step NAME CMD...: run, log, record exit code and seconds; never stops the script
  local name="$1" t0 rc
  shift
  t0=$(date +%s)
  echo "== $name"
  if "$@" >"$dir/logs/$name.log" 2>&1; then rc=0; else rc=$?; fi
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >>"$dir/logs/steps.tsv"
  [ "$rc" -eq 0 ] || echo "   failed (exit $rc): $dir/logs/$name.log"
}

run() {
  for m in "${models[@]}"; do
    [ -f "$dir/$m/best.onnx" ] || { echo "device_check: $dir/$m/best.onnx missing: run 'prepare' first" >&2; exit 2; }
  done
  mkdir -p "$dir/logs"
  : >"$dir/logs/steps.tsv"
  local t0 onnx engine
  t0=$(date +%s)
  step doctor "$edgeano" doctor --json "$dir/logs/doctor.json"
  for m in "${models[@]}"; do
    for p in "${precisions[@]}"; do
      onnx="$dir/$m/best.onnx"
      [ "$p" = fp32 ] || onnx="$dir/$m/best.$p.onnx"
      engine="$dir/$m/best.$p.engine"
      step "build-$m-$p" "$edgeano" build "$onnx" --timing-cache "$dir/timing.cache" --out "$engine"
      step "verify-$m-$p" "$edgeano" verify "$engine" --json "$dir/logs/verify-$m-$p.json"
      step "bench-$m-$p" "$edgeano" bench --model "$engine" --iters "${BENCH_ITERS:-200}" --json "$dir/logs/bench-$m-$p.json"
    done
  done
  # the same comparison as verify, as tests; it reuses the engines above (they fit this TensorRT and GPU)
  step pytest env EDGEANO_ARTIFACTS="$dir" "$py" -m pytest -q -m tensorrt -p no:cacheprovider "$root/tests"
  "$py" - "$dir" "$report" "$(( $(date +%s) - t0 ))" <<'PYEOF'
import json, platform, sys, time
from pathlib import Path

d, report, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
logs = d / "logs"

def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

def tail(name, n=15):
    try:
        return (logs / f"{name}.log").read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []

steps = []
for line in (logs / "steps.tsv").read_text().splitlines():
    name, rc, secs = line.split("\t")
    steps.append({"name": name, "rc": int(rc), "seconds": int(secs), "log_tail": tail(name) if int(rc) else tail(name, 3)})
engines = {}
for m in ("gaussian", "ganomaly"):
    for p in ("fp32", "fp16", "int8"):
        side = load(d / m / f"best.{p}.engine.json") or {}
        trt = side.get("tensorrt", {})
        engines.setdefault(m, {})[p] = {
            "build": {k: trt.get(k) for k in ("version", "device", "how", "build_seconds", "engine_bytes", "plan")},
            "verify": load(logs / f"verify-{m}-{p}.json"), "bench": load(logs / f"bench-{m}-{p}.json")}
try:
    import edgeano
    version = edgeano.__version__
except ImportError:
    version = None
doc = {"edgeano": version, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
       "host": platform.uname()._asdict(), "ok": all(s["rc"] == 0 for s in steps), "steps": steps,
       "doctor": load(logs / "doctor.json"), "engines": engines,
       "pytest": next(({"rc": s["rc"], "summary": s["log_tail"][-1:]} for s in steps if s["name"] == "pytest"), None)}
report.write_text(json.dumps(doc, indent=2) + "\n")
print(f"device_check: {'all steps passed' if doc['ok'] else 'FAILED steps: ' + ', '.join(s['name'] for s in steps if s['rc'])}"
      f" in {seconds} s; report: {report}")
sys.exit(0 if doc["ok"] else 1)
PYEOF
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  all) prepare && run ;;
  *) usage ;;
esac
