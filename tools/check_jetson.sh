#!/usr/bin/env bash
# Static checks of the Jetson deployment folder (no Jetson needed), called from .ci/run:
#   1. shellcheck on jetson/*.sh and scripts/device_check.sh (installed with apt-get when missing and we are root)
#   2. the systemd unit: required keys (always) and `systemd-analyze verify` where it exists
#   3. the Dockerfile: L4T base matching JetPack 6, edgeano installed with --no-deps, no pip OpenCV
#   4. the env file and README cover what the unit and the brief need
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
fail=0
ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; fail=1; }

# --- 1. shellcheck ---------------------------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq shellcheck >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq shellcheck >/dev/null 2>&1; }) || true
fi
shopt -s nullglob
scripts=(jetson/*.sh tools/check_jetson.sh scripts/device_check.sh)
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck -x "${scripts[@]}"; then ok "shellcheck ${scripts[*]}"; else bad "shellcheck ${scripts[*]}"; fi
else
    for s in "${scripts[@]}"; do bash -n "$s" || bad "bash -n $s"; done
    echo "SKIP  shellcheck not installed (apt-get install -y shellcheck); ran bash -n only"
fi
for s in jetson/*.sh; do
    grep -q '^set -euo pipefail' "$s" || bad "$s lacks 'set -euo pipefail'"
done

# --- 2. systemd unit ---------------------------------------------------------------------------------
if "$PY" - jetson/edgeano.service <<'PYEOF'
import configparser, sys
path = sys.argv[1]
cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
cp.optionxform = str
cp.read(path)
need = {
    "Unit": ["Description"],
    "Service": ["ExecStart", "Restart", "EnvironmentFile", "StandardOutput", "StandardError", "KillSignal"],
    "Install": ["WantedBy"],
}
errors = [f"[{s}] lacks {k}" for s, keys in need.items() for k in keys if not cp.has_option(s, k)]
if cp.has_option("Service", "Restart") and cp.get("Service", "Restart") not in ("on-failure", "always"):
    errors.append("Restart should be on-failure")
for key in ("StandardOutput", "StandardError"):
    if cp.has_option("Service", key) and cp.get("Service", key) != "journal":
        errors.append(f"{key} should be journal")
# restart on a lost source (3), never on a configuration error (2): edgeano.errors, README "Exit codes"
prevent = cp.get("Service", "RestartPreventExitStatus", fallback="").split()
if "2" not in prevent or "3" in prevent:
    errors.append("RestartPreventExitStatus should hold 2 (bad flag/model) and not 3 (source lost)")
exe = cp.get("Service", "ExecStart", fallback="")
if " run " not in f" {exe} " or "--headless" not in exe or "${EDGEANO_MODEL}" not in exe:
    errors.append("ExecStart should be `edgeano run --model ${EDGEANO_MODEL} ... --headless`")
print("\n".join(errors) if errors else "keys ok")
sys.exit(1 if errors else 0)
PYEOF
then ok "jetson/edgeano.service required keys"; else bad "jetson/edgeano.service required keys"; fi

if command -v systemd-analyze >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # The unit names the device's venv; point ExecStart at a stub so verify checks the rest.
    printf '#!/bin/sh\nexit 0\n' > "$tmp/edgeano" && chmod +x "$tmp/edgeano"
    sed "s#/opt/edgeano/venv/bin/edgeano#$tmp/edgeano#" jetson/edgeano.service > "$tmp/edgeano.service"
    out="$(systemd-analyze verify "$tmp/edgeano.service" 2>&1)" && vrc=0 || vrc=$?
    # verify exits 0 on unknown keys and typos; any line about our unit is a finding
    if [ "$vrc" -eq 0 ] && ! grep -q "edgeano.service" <<< "$out"; then
        ok "systemd-analyze verify jetson/edgeano.service"
    else
        printf '%s\n' "$out"; bad "systemd-analyze verify jetson/edgeano.service"
    fi
else
    echo "SKIP  systemd-analyze not available (key check above still ran)"
fi

# --- 3 + 4. Dockerfile, env file, README -------------------------------------------------------------
if "$PY" - <<'PYEOF'
import re, sys
from pathlib import Path
errors = []
KEYWORDS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
            "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
text = Path("jetson/Dockerfile").read_text()
logical, buf = [], ""
for line in text.splitlines():  # join continuation lines, drop comments
    if not buf and (not line.strip() or line.lstrip().startswith("#")):
        continue
    buf += line.rstrip()
    if buf.endswith("\\"):
        buf = buf[:-1] + " "
        continue
    logical.append(buf.strip())
    buf = ""
if buf:
    errors.append("Dockerfile ends inside a line continuation")
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in logical]
for kw, _ in instr:
    if kw not in KEYWORDS:
        errors.append(f"Dockerfile: unknown instruction {kw}")
first = next((i for i, (kw, _) in enumerate(instr) if kw != "ARG"), None)
if first is None or instr[first][0] != "FROM":
    errors.append("Dockerfile: the first instruction after ARGs must be FROM")
args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), instr[first][1] if first is not None else "")
if not re.fullmatch(r"nvcr\.io/nvidia/l4t-(jetpack|tensorrt):r36\.\d+\.\d+\S*", base.strip()):
    errors.append(f"Dockerfile: base {base!r} is not an L4T JetPack 6 image (nvcr.io/nvidia/l4t-jetpack:r36.x.y)")
if not any(kw == "RUN" and "pip install --no-deps" in a for kw, a in instr):
    errors.append("Dockerfile: edgeano must be installed with `pip install --no-deps` (keep JetPack's OpenCV)")
pip_installs = [seg for kw, a in instr if kw == "RUN" for seg in re.split(r"&&|;", a) if re.search(r"\bpip3?\b.*\binstall\b", seg)]
if any(re.search(r"opencv-(contrib-)?python", seg) for seg in pip_installs):
    errors.append("Dockerfile: installs pip's opencv-python over JetPack's OpenCV")
if any(re.search(r"(^|[\s\"'])torch([\s\"'<>=]|$)", seg) for seg in pip_installs):
    errors.append("Dockerfile: installs torch; the runtime image must not")
if not any(kw in ("ENTRYPOINT", "CMD") for kw, _ in instr):
    errors.append("Dockerfile: no ENTRYPOINT/CMD")

env = dict(l.split("=", 1) for l in Path("jetson/edgeano.env").read_text().splitlines() if l.strip() and not l.startswith("#"))
for key in ("EDGEANO_MODEL", "EDGEANO_SOURCE", "EDGEANO_ARGS"):
    if key not in env:
        errors.append(f"jetson/edgeano.env lacks {key}")

readme = Path("jetson/README.md").read_text()
for needle in ("JetPack 5", "JetPack 6", "--no-deps", "opencv-python", "pycuda", "edgeano build", "nvpmodel", "jetson_clocks",
               "systemctl", "GStreamer"):
    if needle not in readme:
        errors.append(f"jetson/README.md does not mention {needle}")
print("\n".join(errors) if errors else "Dockerfile, env, README ok")
sys.exit(1 if errors else 0)
PYEOF
then ok "jetson/Dockerfile, jetson/edgeano.env, jetson/README.md"; else bad "jetson/Dockerfile, jetson/edgeano.env, jetson/README.md"; fi

if [ "$fail" -ne 0 ]; then echo "check_jetson: FAILED"; exit 1; fi
echo "check_jetson: all checks passed"
