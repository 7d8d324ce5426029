#!/usr/bin/env bash
# Checks every TensorRT name edgeano uses against the real Python bindings of each TensorRT version
# it supports (8.6 and 10.3 on JetPack 6, 10.x and 11.x on desktops), without TensorRT or a GPU.
#
#   tools/check_trt_api.sh [TRT_API_DIR]      default: ../shared/tools/trt-api beside the repo
#
# Uses trt-api (setup.sh + check.py). A MISSING name fails the check unless tools/trt_api_allow.txt
# lists it for that version, i.e. it sits in a branch gated off for that version. An allowlist entry
# that is no longer MISSING also fails, so the list stays exact. UNKNOWN lines are printed only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
api="${1:-${TRT_API_DIR:-$root/../shared/tools/trt-api}}"
allow_file="$root/tools/trt_api_allow.txt"
versions=(8.6.1 10.3.0 10.16.1.11 11.4.0.106)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
[ -x "$api/setup.sh" ] || { echo "check_trt_api: trt-api not found at $api" >&2; exit 2; }
"$api/setup.sh" "${versions[@]}" >/dev/null 2>"${TMPDIR:-/tmp}/check_trt_api.setup.log" ||
  { cat "${TMPDIR:-/tmp}/check_trt_api.setup.log" >&2; echo "check_trt_api: setup.sh failed" >&2; exit 2; }

cd "$root"
mapfile -t files < <(grep -rlE --include='*.py' '^[[:space:]]*(import tensorrt|from tensorrt)' edgeano | sort)
[ ${#files[@]} -gt 0 ] || { echo "check_trt_api: no file imports tensorrt" >&2; exit 2; }
echo "check_trt_api: ${#files[@]} files: ${files[*]}"

allowed() { grep -vE '^[[:space:]]*(#|$)' "$allow_file" | sed 's/#.*//' | awk -v v="$1" '$1==v {print $2}' | sort -u; }

fail=0
for v in "${versions[@]}"; do
  out=$("$api/trt-python" "$v" "$api/check.py" "${files[@]}" 2>&1 || true)
  if ! printf '%s\n' "$out" | grep -q "^TensorRT $v\$"; then
    fail=1; echo "FAIL TensorRT $v: check.py did not run ($(printf '%s\n' "$out" | tail -n1))"; continue
  fi
  missing=$(printf '%s\n' "$out" | awk '$1=="MISSING" {print $2}' | sort -u)
  allow=$(allowed "$v")
  bad=$(comm -23 <(printf '%s\n' "$missing" | sed '/^$/d') <(printf '%s\n' "$allow" | sed '/^$/d'))
  stale=$(comm -13 <(printf '%s\n' "$missing" | sed '/^$/d') <(printf '%s\n' "$allow" | sed '/^$/d'))
  n_unknown=$(printf '%s\n' "$out" | grep -c '^UNKNOWN' || true)
  n_missing=$(printf '%s\n' "$missing" | sed '/^$/d' | wc -l)
  if [ -n "$bad" ]; then
    fail=1
    while read -r name; do printf '%s\n' "$out" | grep -F "MISSING   $name " | sed "s/^/FAIL TensorRT $v: /"; done <<<"$bad"
  fi
  if [ -n "$stale" ]; then
    fail=1
    while read -r name; do echo "FAIL TensorRT $v: allowlist entry '$name' is not missing any more: remove it from tools/trt_api_allow.txt"; done <<<"$stale"
  fi
  echo "TensorRT $v: $n_missing missing (all gated: $([ -z "$bad" ] && echo yes || echo NO)), $n_unknown unknown (informational)"
done
[ $fail -eq 0 ] && echo "check_trt_api: OK" || echo "check_trt_api: FAILED"
exit $fail
