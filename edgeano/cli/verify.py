"""edgeano verify: run an artifact (ONNX of any precision, or a TensorRT engine) on its golden
images and compare each output with PyTorch's, under the parity tolerances of its backend and
precision. Torch-free: what to run on the device after `edgeano build`."""

from __future__ import annotations

import click

from edgeano.cli.common import backend_option, friendly_errors, next_step


@click.command("verify")
@click.argument("artifact", type=click.Path())
@click.option("--golden", type=click.Path(), default=None,
              help="Golden file (default: the one the artifact's metadata names, beside it or beside its ONNX).")
@backend_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the comparison as JSON.")
@friendly_errors
def command(artifact, golden, backend, json_path):
    """Compare ARTIFACT with PyTorch on the golden images `edgeano export` saved.

    \b
    One line per output; exit 0 when every output is within tolerance, else 1 with the metric
    that failed (e.g. score.max_rel).
    """
    from pathlib import Path

    from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
    from edgeano.fileio import write_json
    from edgeano.golden import describe, report, verify_artifact

    if not Path(artifact).is_file():
        raise EdgeanoError(f"artifact not found: {artifact}", EXIT_USAGE)
    if golden is not None and not Path(golden).is_file():
        raise EdgeanoError(f"--golden {golden}: file not found", EXIT_USAGE)
    result, info = verify_artifact(artifact, golden, backend)
    for line in describe(result, info):
        click.echo(line)
    if json_path:
        write_json(json_path, report(result, info))
        click.echo(f"wrote {json_path}")
    if not result.passed:
        raise EdgeanoError(f"{artifact} differs from PyTorch: {result.summary()}", EXIT_ERROR)
    next_step(f"edgeano bench --model {artifact}   |   edgeano run --model {artifact} --camera 0")
