"""What this CPU can do: cores, vector ISA, clock, and the FP32 FMA peak `edgeano bench` compares with.

The peak is cores x clock x FP32 FLOP per cycle, where FLOP per cycle comes from the ISA flags in
/proc/cpuinfo and the vendor: two FMA pipes of the widest vector width is what current x86 server
cores have (Intel AVX-512 cores: 2 x 16 lanes x 2 = 64; AMD Zen 2-4 and AVX2-only cores: 2 x 8 x
2 = 32, Zen 4 runs AVX-512 on 256-bit pipes; Zen 5: 64). The clock is the highest one the system
reports (cpufreq's maximum, else /proc/cpuinfo's "cpu MHz", which in a VM is often the base
clock): the figure is an estimate and says what it assumed. Linux only; elsewhere it is None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional


def _cpuinfo(text: Optional[str] = None) -> Dict[str, str]:
    """The first processor block of /proc/cpuinfo as {key: value}."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    out: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def physical_cores() -> int:
    """Cores available to this process (hyper-threads counted once where the kernel says)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    info = _cpuinfo()
    try:
        siblings, cores = int(info.get("siblings", 0)), int(info.get("cpu cores", 0))
    except ValueError:
        siblings = cores = 0
    if siblings and cores and siblings > cores:  # SMT on: one thread per core is what inference wants
        n = max(1, n * cores // siblings)
    return max(1, n)


def _max_clock_ghz(info: Dict[str, str]) -> Optional[tuple]:
    """(GHz, where it came from)."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        return float(info["cpu MHz"]) / 1e3, "/proc/cpuinfo cpu MHz (may be the base clock)"
    except (KeyError, ValueError):
        return None


def flop_per_cycle(flags, vendor: str = "", family: int = 0) -> tuple:
    """(FP32 FLOP per cycle per core, ISA name) from /proc/cpuinfo flags."""
    flags = set(flags)
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family < 26:  # Zen 4: AVX-512 on two 256-bit FMA pipes
            return 32, "AVX-512 (256-bit FMA pipes)"
        return 64, "AVX-512 FMA"
    if "fma" in flags and "avx2" in flags:
        return 32, "AVX2 FMA"
    if "avx" in flags:
        return 16, "AVX"
    return 8, "SSE"


def cpu_facts(cpuinfo_text: Optional[str] = None) -> Dict:
    """{"model", "vendor", "cores", "isa", "flop_per_cycle", "clock_ghz", "clock_source",
    "peak_gflops_per_core", "int8_dot" (VNNI names), "bf16"}; keys whose value is unknown are None."""
    info = _cpuinfo(cpuinfo_text)
    flags = info.get("flags", "").split()
    try:
        family = int(info.get("cpu family", 0))
    except ValueError:
        family = 0
    per_cycle, isa = flop_per_cycle(flags, info.get("vendor_id", ""), family)
    clock = _max_clock_ghz(info)
    flagset = set(flags)
    return {
        "model": info.get("model name"),
        "vendor": info.get("vendor_id"),
        "cores": physical_cores(),
        "isa": isa if flags else None,
        "flop_per_cycle": per_cycle if flags else None,
        "clock_ghz": round(clock[0], 3) if clock else None,
        "clock_source": clock[1] if clock else None,
        "peak_gflops_per_core": round(per_cycle * clock[0], 1) if clock and flags else None,
        "int8_dot": sorted(flagset & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "bf16": sorted(flagset & {"avx512_bf16", "amx_bf16"}),
    }


def fma_peak_gflops(threads: Optional[int], facts: Optional[Dict] = None) -> Optional[float]:
    """FP32 FMA peak of `threads` cores (None: all of them), or None where it cannot be read."""
    facts = facts or cpu_facts()
    if not facts.get("peak_gflops_per_core"):
        return None
    n = min(int(threads or facts["cores"]), facts["cores"])
    return facts["peak_gflops_per_core"] * n


CPU_BACKENDS = ("onnxruntime", "openvino")


def loop_runner_options(backend: str, cores: Optional[int] = None) -> Dict:
    """Runner keywords for the camera loop when the user gave no thread count.

    The loop decodes and preprocesses the next frame in a capture thread while the main thread
    runs inference (edgeano/stream/loop.py). An inference library's idle threads spin on the cores
    the capture thread needs. ONNX Runtime: every core, its idle threads sleeping instead of
    spinning (2-core Zen 3, quiet, two runs, docs/benchmarks/cpu.md: 73-79 loop fps at 0.88-0.90
    of its own engine-only rate, against 64-69 fps with one thread and 77 fps at 0.76-0.77 with
    spinning threads). OpenVINO (its runner has no such switch): one core left to capture.
    GPU backends take nothing."""
    if backend not in CPU_BACKENDS:
        return {}
    n = cores or physical_cores()
    if backend == "onnxruntime":
        return {"threads": n, "spinning": False}
    return {"threads": max(1, n - 1)}
