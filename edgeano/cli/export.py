"""edgeano export: checkpoint -> ONNX (metadata, scoring head inside), optional FP16 / INT8 QDQ."""

from __future__ import annotations

import click

from edgeano.cli.common import COUNT, friendly_errors, next_step, output_file


@click.command("export")
@click.option("--model", "model", required=True, help="Checkpoint (.pt) or model name (newest runs/<name>/*/weights/best.pt).")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True, help="ONNX opset (17 works with TensorRT 8.6, 10.x, 11).")
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension.")
@click.option("--out", type=click.Path(), default=None, callback=output_file(".onnx"), help="Output .onnx (default: beside the checkpoint).")
@click.option("--fp16", is_flag=True, help="Also write an FP16 ONNX (FP16-unsafe parts kept in FP32) and build its engine where TensorRT is present.")
@click.option("--int8", is_flag=True, help="Also calibrate an INT8 QDQ ONNX on --data.")
@click.option("--data", type=click.Path(), default=None, help="Normal images: INT8 calibration and the parity check.")
@click.option("--num", type=COUNT, default=512, show_default=True, help="INT8: calibration images.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True, help="INT8 calibration method.")
@click.option("--no-build", is_flag=True, help="Do not build TensorRT engines even where TensorRT is present.")
@click.option("--runs", default="runs", show_default=True, type=click.Path())
@friendly_errors
def command(model, opset, dynamic_batch, out, fp16, int8, data, num, method, no_build, runs):
    """Export MODEL to ONNX and check it against PyTorch."""
    from edgeano.export.pipeline import run_export

    outputs = run_export(model, opset, dynamic_batch, out, fp16, int8, data, num, method, runs, build=not no_build)
    last = outputs.get("int8") or outputs.get("fp16") or outputs["fp32"]
    next_step(f"edgeano bench --model {last}   |   edgeano run --model {last} --camera 0")
