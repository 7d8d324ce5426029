"""edgeano build: ONNX -> TensorRT engine + sidecar JSON, on the device that will run it."""

from __future__ import annotations

import math
from pathlib import Path

import click

from edgeano.cli.common import friendly_errors, next_step
from edgeano.errors import EXIT_USAGE, EdgeanoError

DEFAULTS = {"--workspace": 2.0, "--dla": None, "--batch": 1, "--opt-batch": None, "--timing-cache": None,
            "--calib-data": None, "--device": 0, "--out": None}


def _command_line(model, precision, values, tf32: bool) -> str:
    parts = ["edgeano build", str(model), "--precision", precision]
    for flag, value in values.items():
        if value is not None and value != DEFAULTS[flag]:
            parts += [flag, str(value)]
    return " ".join(parts + (["--tf32"] if tf32 else []))


@click.command("build")
@click.argument("model", type=click.Path())
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Engine precision. Default: the ONNX's own (fp32, FP16 ONNX -> fp16, QDQ ONNX -> int8).")
@click.option("--workspace", type=float, default=2.0, show_default=True, help="Builder workspace limit in GiB.")
@click.option("--dla", type=int, default=None, help="Run on DLA core N (Jetson Xavier/Orin) with GPU fallback; static batch.")
@click.option("--batch", type=int, default=1, show_default=True, help="Largest batch (dynamic-batch ONNX: profile max).")
@click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for (dynamic-batch ONNX; default 1, what the camera loop runs).")
@click.option("--tf32", is_flag=True, help="Let FP32 layers use TF32 (10-bit mantissa, Ampere/Orin and later); off by default.")
@click.option("--timing-cache", type=click.Path(), default=None, help="Timing cache file: read if usable, written after the build.")
@click.option("--calib-data", type=click.Path(), default=None,
              help="TensorRT 8.x/10.x, int8 from a plain FP32 ONNX: normal images to calibrate on (cached beside the engine).")
@click.option("--device", type=int, default=0, show_default=True, help="CUDA device to build on (and run the engine on).")
@click.option("--out", type=click.Path(), default=None, help="Engine path (default: beside the ONNX, <base>.<precision>.engine).")
@friendly_errors
def command(model, precision, workspace, dla, batch, opt_batch, tf32, timing_cache, calib_data, device, out):
    """Build a TensorRT engine from MODEL (.onnx from `edgeano export`) on this device."""
    from edgeano.runtime.engine import ENGINE_SUFFIXES
    from edgeano.runtime.trt_build import build_engine, default_engine_path, inspect_onnx
    from edgeano.runtime.trt_plan import check_batch, check_dla, resolve_precision

    # Everything that can be checked without TensorRT, first: a bad flag fails here on any machine.
    info = inspect_onnx(model)  # metadata vs graph (check_io), external data location
    precision, _how = resolve_precision(precision, info.precision, None, calib_data)
    max_batch = check_batch(info.input_shape, batch, opt_batch, str(model))
    check_dla(dla, precision, opt_batch, max_batch, info.dynamic_batch)
    if not (workspace > 0 and math.isfinite(workspace)):
        raise EdgeanoError(f"--workspace {workspace}: must be a number of GiB > 0", EXIT_USAGE)
    if device < 0:
        raise EdgeanoError(f"--device {device}: CUDA devices are numbered from 0", EXIT_USAGE)
    if calib_data is not None:
        from edgeano.calibration.reader import calibration_paths

        calibration_paths(calib_data, 1)
    out = Path(out) if out else default_engine_path(model, precision)
    if out.suffix.lower() not in ENGINE_SUFFIXES:
        raise EdgeanoError(f"--out {out}: use one of {', '.join(ENGINE_SUFFIXES)} so edgeano loads it as an engine", EXIT_USAGE)
    if timing_cache is not None and Path(timing_cache).is_dir():
        raise EdgeanoError(f"--timing-cache {timing_cache} is a folder; give a file path", EXIT_USAGE)
    cmd = _command_line(model, precision, {"--workspace": workspace, "--dla": dla, "--batch": batch, "--opt-batch": opt_batch,
                                           "--timing-cache": timing_cache, "--calib-data": calib_data, "--device": device,
                                           "--out": out}, tf32)

    from edgeano.runtime.tensorrt import tensorrt_available

    ok, why = tensorrt_available(device)
    if not ok:
        raise EdgeanoError(f"cannot build here: {why}. Engines are built on the machine that runs them: "
                           f"copy {model} there and run `{cmd}`")
    side = build_engine(model, out, precision=precision, workspace_gib=workspace, dla_core=dla, max_batch=batch,
                        opt_batch=opt_batch, tf32=tf32, timing_cache=timing_cache, calib_data=calib_data, device=device)
    click.echo(f"engine: {out} ({side['precision']}, TensorRT {side['tensorrt']['version']}, {side['tensorrt']['device']})")
    for line in side["tensorrt"]["plan"]["decisions"]:
        click.echo(f"  {line}")
    next_step(f"edgeano verify {out}   |   edgeano bench --model {out}   |   edgeano run --model {out} --camera 0")
