"""edgeano doctor: one screen of what matters on a Jetson or GPU box, each missing piece with the
command that fixes it; exit 1 when the TensorRT path cannot work here."""

from __future__ import annotations

import click

from edgeano.cli.common import friendly_errors, next_step

MARK = {"ok": "ok", "warn": "WARN", "missing": "MISSING", "info": "-"}


@click.command("doctor")
@click.option("--no-engine", is_flag=True, help="Skip building and running the tiny engine.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the checks as JSON.")
@friendly_errors
def command(no_engine, json_path):
    """Check L4T/JetPack, CUDA, TensorRT, pycuda, GPU, DLA, OpenCV GStreamer, cameras, power mode,
    and build + run a tiny engine where TensorRT is."""
    from edgeano.errors import EXIT_ERROR, EdgeanoError
    from edgeano.fileio import write_json
    from edgeano.runtime.doctor import as_dicts, blocking, run_checks

    checks = run_checks(engine=not no_engine, progress=lambda m: click.echo(m, err=True))
    width = max(len(c.name) for c in checks)
    for c in checks:
        click.echo(f"  {MARK.get(c.status, c.status):<8} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            click.echo(f"  {'':<8} {'':<{width}}  fix: {c.fix}")
    if json_path:
        write_json(json_path, {"checks": as_dicts(checks), "tensorrt_path_works": not blocking(checks)})
        click.echo(f"wrote {json_path}")
    bad = blocking(checks)
    if bad:
        first = bad[0]
        rest = "".join(f", {c.name}" for c in bad[1:])
        raise EdgeanoError(f"the TensorRT path cannot work here: {first.name} {first.detail}{rest}"
                           + (f"; first fix: {first.fix}" if first.fix else "")
                           + " (ONNX Runtime still works: --backend onnxruntime)", EXIT_ERROR)
    next_step("edgeano build MODEL.onnx   |   bash scripts/device_check.sh run ARTIFACTS_DIR")
