"""edgeano build: ONNX -> TensorRT engine + sidecar JSON, on the device that will run it."""

from __future__ import annotations

from pathlib import Path

import click

from edgeano.cli.common import COUNT, POSITIVE, friendly_errors, next_step
from edgeano.errors import EdgeanoError


def _command_line(model, precision, workspace, dla, batch, timing_cache, calib_data, out) -> str:
    parts = ["edgeano build", str(model), "--precision", precision]
    for flag, value, default in (("--workspace", workspace, 2.0), ("--dla", dla, None), ("--batch", batch, 1),
                                 ("--timing-cache", timing_cache, None), ("--calib-data", calib_data, None), ("--out", out, None)):
        if value is not None and value != default:
            parts += [flag, str(value)]
    return " ".join(parts)


@click.command("build")
@click.argument("model", type=click.Path())
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Engine precision. Default: the ONNX's own (fp32, FP16 ONNX -> fp16, QDQ ONNX -> int8).")
@click.option("--workspace", type=POSITIVE, default=2.0, show_default=True, help="Builder workspace limit in GiB.")
@click.option("--dla", type=int, default=None, help="Run on DLA core N (Jetson Xavier/Orin) with GPU fallback.")
@click.option("--batch", type=COUNT, default=1, show_default=True, help="Largest batch (dynamic-batch ONNX: profile min 1, opt/max N).")
@click.option("--timing-cache", type=click.Path(), default=None, help="Timing cache file: read if present, written after the build.")
@click.option("--calib-data", type=click.Path(), default=None,
              help="TensorRT 8.6/10.x, int8 from a plain FP32 ONNX: normal images to calibrate on (cached beside the engine).")
@click.option("--out", type=click.Path(), default=None, help="Engine path (default: beside the ONNX, .engine).")
@friendly_errors
def command(model, precision, workspace, dla, batch, timing_cache, calib_data, out):
    """Build a TensorRT engine from MODEL (.onnx from `edgeano export`) on this device."""
    from edgeano.runtime.engine import ENGINE_SUFFIXES
    from edgeano.runtime.trt_build import build_engine, check_batch, default_engine_path, inspect_onnx, resolve_precision

    # Everything that can be checked without TensorRT, first: a bad flag fails here on any machine.
    info = inspect_onnx(model)
    precision, _how = resolve_precision(precision, info.precision, None, calib_data)
    check_batch(info, batch)
    if dla is not None and dla < 0:
        raise EdgeanoError(f"--dla {dla}: DLA cores are numbered from 0")
    if dla is not None and precision == "fp32":
        raise EdgeanoError("DLA runs FP16 or INT8 only: pass --precision fp16 (or int8) with --dla")
    if calib_data is not None:
        from edgeano.runtime.trt_calibrator import calibration_images

        calibration_images(calib_data)
    out = Path(out) if out else default_engine_path(model, precision)
    if out.suffix.lower() not in ENGINE_SUFFIXES:
        raise EdgeanoError(f"--out {out}: use one of {', '.join(ENGINE_SUFFIXES)} so edgeano loads it as an engine")
    if timing_cache is not None and Path(timing_cache).is_dir():
        raise EdgeanoError(f"--timing-cache {timing_cache} is a folder; give a file path")
    cmd = _command_line(model, precision, workspace, dla, batch, timing_cache, calib_data, out)

    from edgeano.runtime.tensorrt import tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        raise EdgeanoError(f"cannot build here: {why}. Engines are built on the machine that runs them: "
                           f"copy {model} there and run `{cmd}`")
    side = build_engine(model, out, precision=precision, workspace_gib=workspace, dla_core=dla, max_batch=batch,
                        timing_cache=timing_cache, calib_data=calib_data)
    click.echo(f"engine: {out} ({side['precision']}, TensorRT {side['tensorrt']['version']}, {side['tensorrt']['device']})")
    next_step(f"edgeano bench --model {out}   |   edgeano run --model {out} --camera 0")
