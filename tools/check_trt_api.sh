#!/usr/bin/env bash
# Checks every TensorRT name edgeano uses against the Python bindings of each TensorRT version it
# supports (8.5 on JetPack 5.1, 8.6 and 10.3 on JetPack 6, 10.x and 11.x on desktops), without
# TensorRT or a GPU. 8.5.2 is trt-api's names-only stand-in (no bindings of it on PyPI).
#
#   tools/check_trt_api.sh [TRT_API_DIR]      default: ../shared/tools/trt-api beside the repo
#
# Two checkers per version, on every edgeano file that uses `trt.`:
#   trt-api's check.py          chains rooted at an imported tensorrt (trt.BuilderFlag.FP16)
#   tools/check_trt_calls.py    the module passed as a `trt` parameter, and methods/attributes used
#                               on TensorRT objects (config.set_flag, self.context.execute_async_v3)
# A MISSING name fails the check unless tools/trt_api_allow.txt lists it for that version, i.e. it
# sits in a branch gated off for that version. An allowlist entry that is no longer MISSING also
# fails, so the list stays exact. MISMATCH (a name that does not hold the class the checker assumes)
# fails. UNKNOWN lines (check.py) are printed only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
api="${1:-${TRT_API_DIR:-$root/../shared/tools/trt-api}}"
allow_file="$root/tools/trt_api_allow.txt"
versions=(8.5.2 8.6.1 10.3.0 10.16.1.11 11.4.0.106)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
[ -x "$api/setup.sh" ] || { echo "check_trt_api: trt-api not found at $api" >&2; exit 2; }
"$api/setup.sh" "${versions[@]}" >/dev/null 2>"${TMPDIR:-/tmp}/check_trt_api.setup.log" ||
  { cat "${TMPDIR:-/tmp}/check_trt_api.setup.log" >&2; echo "check_trt_api: setup.sh failed" >&2; exit 2; }

cd "$root"
mapfile -t files < <(grep -rlE --include='*.py' '(^[[:space:]]*(import tensorrt|from tensorrt)|\btrt\.)' edgeano | sort)
[ ${#files[@]} -gt 0 ] || { echo "check_trt_api: no file uses tensorrt" >&2; exit 2; }
echo "check_trt_api: ${#files[@]} files: ${files[*]}"

allowed() { grep -vE '^[[:space:]]*(#|$)' "$allow_file" | sed 's/#.*//' | awk -v v="$1" '$1==v {print $2}' | sort -u; }

fail=0
for v in "${versions[@]}"; do
  out=$("$api/trt-python" "$v" "$api/check.py" "${files[@]}" 2>&1 || true)
  calls=$("$api/trt-python" "$v" "$root/tools/check_trt_calls.py" "${files[@]}" 2>&1 || true)
  if ! printf '%s\n' "$out" | grep -q "^TensorRT $v\$" || ! printf '%s\n' "$calls" | grep -q "^TensorRT $v\$"; then
    fail=1; echo "FAIL TensorRT $v: a checker did not run ($(printf '%s\n' "$out" "$calls" | grep -v '^TensorRT' | tail -n1))"; continue
  fi
  if printf '%s\n' "$calls" | grep -q '^MISMATCH'; then
    fail=1; printf '%s\n' "$calls" | grep '^MISMATCH' | sed "s/^/FAIL TensorRT $v: /"
  fi
  out=$(printf '%s\n' "$out" "$calls")
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
