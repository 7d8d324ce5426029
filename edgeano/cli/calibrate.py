"""edgeano calibrate: FP32 ONNX -> INT8 QDQ ONNX (one file for every TensorRT version) + report."""

from __future__ import annotations

import click

from edgeano.cli.common import friendly_errors, next_step, output_file


@click.command("calibrate")
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Normal images: MVTec folder (uses train/good) or a plain folder.")
@click.option("--num", type=int, default=512, show_default=True, help="Calibration images (300+ recommended).")
@click.option("--method", default="minmax", show_default=True, help="Activation ranges: minmax, entropy or percentile.")
@click.option("--eval", "eval_dir", type=click.Path(), default=None, help="MVTec folder with test/: also report image AUROC FP32 vs INT8.")
@click.option("--out", type=click.Path(), default=None, callback=output_file(".onnx"), help="Output .onnx (default: MODEL.int8.onnx beside MODEL).")
@click.option("--float-stride", type=int, default=None,
              help="Keep layers at stride <= N in float (default: per model, 4 for gaussian; 0 = all INT8).")
@click.option("--target", type=click.Choice(["tensorrt", "cpu"]), default="tensorrt", show_default=True,
              help="tensorrt: QDQ for every TensorRT version (the device artifact); cpu: the x86 CPU form "
                   "(unsigned activations, int32 biases) for --backend onnxruntime on x86, not for TensorRT.")
@friendly_errors
def command(model, data, num, method, eval_dir, out, float_stride, target):
    """Calibrate the FP32 edgeano ONNX MODEL to INT8 (QDQ) on normal images.

    Writes the INT8 ONNX and <out>.report.json (score agreement with FP32, label flips under the
    kept threshold, AUROC with --eval). Build the engine on the device afterwards.
    """
    from edgeano.calibration.quantize import calibrate_onnx

    report = calibrate_onnx(model, out, data, num=num, method=method, eval_dir=eval_dir, float_stride=float_stride, target=target)
    if target == "cpu":
        next_step(f"edgeano bench --model {report['int8']} --backend onnxruntime   |   edgeano run --model {report['int8']} --camera 0")
    else:
        next_step(f"edgeano build {report['int8']} --precision int8   (on the device)")
