"""`edgeano bench`'s compute figures: MACs counted from the ONNX graph equal what the PyTorch
modules compute, the FMA peak is read from the CPU's flags and clock, and bench prints both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeano.macs import count_macs
from edgeano.runtime.cpu import cpu_facts, flop_per_cycle


def torch_macs(model, channels: int, size: int) -> dict:
    """MACs per image of every Conv2d / ConvTranspose2d PyTorch runs in model.forward, by forward hooks."""
    import torch

    total = {"Conv": 0, "ConvTranspose": 0}

    def conv(m, inp, out):
        total["Conv"] += out.numel() * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    def deconv(m, inp, out):
        total["ConvTranspose"] += inp[0].numel() * (m.out_channels // m.groups) * int(np.prod(m.kernel_size))

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else deconv)
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            model.eval()(torch.rand(1, channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    return {k: v for k, v in total.items() if v}


def _export(ckpt: Path, out: Path):
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint

    model, c = load_checkpoint(ckpt)
    meta = checkpoint_metadata(model, c)
    return model, export_onnx(model, out, meta), meta["input"]["channels"], meta["input"]["size"][0]


def test_macs_equal_pytorch_gaussian(gaussian_run, tmp_path):
    model, onnx_path, channels, size = _export(gaussian_run, tmp_path / "g.onnx")
    got = count_macs(onnx_path)
    assert not got["unknown"]
    assert got["by_op"]["Conv"] == torch_macs(model, channels, size)["Conv"]
    assert got["by_op"]["MatMul"] > 0  # the Mahalanobis head


@pytest.mark.parametrize("name", ["ganomaly", "skip-ganomaly"])
def test_macs_equal_pytorch_gan(name, gan_runs, tmp_path):
    model, onnx_path, channels, size = _export(Path(gan_runs[name]["best"]), tmp_path / f"{name}.onnx")
    got = count_macs(onnx_path)
    assert not got["unknown"]
    want = torch_macs(model, channels, size)
    assert {k: got["by_op"].get(k) for k in want} == want


CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: {family}
model name\t: {name}
cpu MHz\t\t: {mhz}
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx {flags}

processor\t: 1
"""


@pytest.mark.parametrize("vendor,family,flags,per_cycle", [
    ("AuthenticAMD", 25, "fma avx2 avx512f avx512_vnni avx512_bf16", 32),  # Zen 4: AVX-512 on 256-bit pipes
    ("AuthenticAMD", 25, "fma avx2", 32),  # Zen 3
    ("GenuineIntel", 6, "fma avx2 avx512f avx512_vnni amx_bf16", 64),  # Xeon with two 512-bit FMA units
    ("GenuineIntel", 6, "avx", 16),
])
def test_fma_peak_from_flags(vendor, family, flags, per_cycle):
    facts = cpu_facts(CPUINFO.format(vendor=vendor, family=family, name="x", mhz="3700.000", flags=flags))
    assert facts["flop_per_cycle"] == per_cycle == flop_per_cycle(flags.split(), vendor, family)[0]
    if facts["clock_source"].startswith("/proc/cpuinfo"):  # no cpufreq here: the canned clock is used
        assert facts["peak_gflops_per_core"] == pytest.approx(per_cycle * 3.7)
    assert facts["int8_dot"] == sorted(set(flags.split()) & {"avx512_vnni", "avx_vnni", "amx_int8"})


def test_bench_prints_gmac_and_peak_share(gaussian_onnx, tmp_path):
    from edgeano.cli.main import cli

    js = tmp_path / "b.json"
    r = CliRunner().invoke(cli, ["bench", "--model", str(gaussian_onnx), "--iters", "3", "--warmup", "1", "--threads", "1",
                                 "--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert res["gmac_per_image"] == pytest.approx(count_macs(gaussian_onnx)["macs"] / 1e9)
    assert res["gflops"] == pytest.approx(2 * res["gmac_per_image"] / (res["infer_ms"]["mean"] / 1e3))
    assert "GMAC/image" in r.output and "GFLOP/s achieved" in r.output
    if cpu_facts()["peak_gflops_per_core"]:  # Linux x86: the share of the FMA peak of the 1 core used
        assert res["fma_peak_gflops"] == pytest.approx(cpu_facts()["peak_gflops_per_core"])
        assert "% of the FP32 FMA peak" in r.output and "1 core x" in r.output


def test_run_gives_capture_a_core_by_sleeping_idle_threads(gaussian_onnx, texture_data):
    """`edgeano run` without --threads: ONNX Runtime on every core with its idle threads sleeping
    (spinning ones take the core the capture thread decodes on), OpenVINO on one core fewer;
    --threads overrides the count and keeps the threads sleeping."""
    import subprocess
    import sys

    from edgeano.runtime.cpu import loop_runner_options, physical_cores
    from edgeano.stream.app import RunOptions, loop_runner_kwargs

    assert loop_runner_options("onnxruntime", cores=2) == {"threads": 2, "spinning": False}
    assert loop_runner_options("openvino", cores=8) == {"threads": 7}
    assert loop_runner_options("tensorrt", cores=8) == {}
    given = RunOptions(model=str(gaussian_onnx), sources=[], runner={"threads": 1})
    assert loop_runner_kwargs(given) == {"threads": 1, "spinning": False}
    exe = Path(sys.executable).with_name("edgeano")
    for extra, want in (([], physical_cores()), (["--threads", "1"], 1)):
        r = subprocess.run([str(exe), "run", "--model", str(gaussian_onnx), "--source", str(texture_data / "test" / "good"),
                            "--headless", "--max-frames", "2", *extra], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"run: onnxruntime-fp32 {want} thread" in r.stderr, r.stderr
        assert ("idle ones sleeping" in r.stderr) == (want > 1), r.stderr
