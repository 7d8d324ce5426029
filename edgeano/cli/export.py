"""edgeano export: checkpoint -> ONNX (metadata, scoring head inside), optional FP16 / INT8 QDQ."""

from __future__ import annotations

import click

from edgeano.cli.common import COUNT, friendly_errors, next_step


@click.command("export")
@click.option("--model", "model", required=True, help="Checkpoint (.pt) or model name (newest runs/<name>/*/weights/best.pt).")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True, help="ONNX opset (17 works with TensorRT 8.6, 10.x, 11).")
@click.option("--dynamic-batch", is_flag=True, help="Export with a dynamic batch dimension.")
@click.option("--out", type=click.Path(), default=None, help="Output .onnx (default: beside the checkpoint); with --format triton/deepstream, the folder to write.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "triton", "deepstream"]), default="onnx", show_default=True,
              help="triton: a model repository for a stock Triton server; deepstream: a Gst-nvinfer config (both export a dynamic batch).")
@click.option("--name", default=None, help="--format triton: the model's name in the repository (default: the model type).")
@click.option("--max-batch", type=int, default=None, help="--format triton: max_batch_size (default 8); deepstream: nvinfer batch-size (default 1).")
@click.option("--fp16", is_flag=True, help="Also write an FP16 ONNX (FP16-unsafe parts kept in FP32) and build its engine where TensorRT is present.")
@click.option("--int8", is_flag=True, help="Also calibrate an INT8 QDQ ONNX on --data.")
@click.option("--data", type=click.Path(), default=None, help="Normal images: INT8 calibration and the parity check.")
@click.option("--num", type=COUNT, default=512, show_default=True, help="INT8: calibration images.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True, help="INT8 calibration method.")
@click.option("--no-build", is_flag=True, help="Do not build TensorRT engines even where TensorRT is present.")
@click.option("--runs", default="runs", show_default=True, type=click.Path())
@friendly_errors
def command(model, opset, dynamic_batch, out, fmt, name, max_batch, fp16, int8, data, num, method, no_build, runs):
    """Export MODEL to ONNX and check it against PyTorch."""
    from edgeano.export.pipeline import run_export

    outputs = run_export(model, opset, dynamic_batch, out, fp16, int8, data, num, method, runs, build=not no_build,
                         fmt=fmt, name=name, max_batch=max_batch)
    last = outputs.get("int8") or outputs.get("fp16") or outputs["fp32"]
    if fmt == "triton":
        return next_step(f"edgeano run --server http://TRITON_HOST:8000 --model {outputs['triton'].parent.name} --camera 0")
    if fmt == "deepstream":
        return next_step(f"python3 jetson/deepstream/edgeano_deepstream.py --config {outputs['deepstream']} --source file:///clip.mp4")
    next_step(f"edgeano bench --model {last}   |   edgeano run --model {last} --camera 0")
