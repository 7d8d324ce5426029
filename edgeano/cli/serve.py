"""`edgeano serve`: host an artifact on a Triton Inference Server (HTTP, gRPC, metrics, dynamic batching)."""

from __future__ import annotations

import signal
import threading

import click

from edgeano.cli.common import BACKENDS, Threads, friendly_errors


@click.command("serve")
@click.option("--model", "-m", required=True, help="Artifact: .onnx, .engine, or a model name (newest runs/<name>/).")
@click.option("--name", default=None, help="Model name clients ask for (default: the file name without suffixes).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="Prometheus metrics at /metrics.")
@click.option("--address", default="0.0.0.0", show_default=True, help="Interface to listen on (127.0.0.1: this machine only).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Largest batch Triton's dynamic batcher forms.")
@click.option("--max-queue-delay-us", type=int, default=500, show_default=True,
              help="How long a request may wait for others to batch with (microseconds).")
@click.option("--input-dtype", type=click.Choice(["uint8", "float32"]), default="uint8", show_default=True,
              help="What travels: uint8 resized frames (4x smaller) or the float32 tensor.")
@click.option("--threads", type=Threads(), default=None, help="CPU threads for ONNX Runtime (default: its own).")
@click.option("--backend", type=click.Choice([b for b in BACKENDS if b != "triton"]), default="auto", show_default=True,
              help="The Engine inside the server: auto = TensorRT where it and a GPU are present, else ONNX Runtime.")
@click.option("--triton-log", type=click.Path(dir_okay=False), default=None, help="Keep tritonserver's own log in this file.")
@friendly_errors
def command(model, name, http_port, grpc_port, metrics_port, address, max_batch, max_queue_delay_us, input_dtype, threads,
            backend, triton_log):
    """Serve MODEL on NVIDIA Triton Inference Server (needs edgeano[serve]).

    \b
    edgeano serve --model model.onnx --name gaussian
    edgeano run --server http://HOST:8000 --model gaussian --camera 0     # on each camera box

    Ctrl-C or SIGTERM stops it. Clients need no artifact: preprocessing and threshold come from the
    served model's config.
    """
    from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError
    from edgeano.loaders import open_engine, resolve_model
    from edgeano.serve import ServeConfig, ServedModel, TritonServer, default_name, serve_available

    if threads is not None and threads < 1:
        raise EdgeanoError(f"--threads {threads}: must be >= 1", EXIT_USAGE)
    ok, why = serve_available()
    if not ok:
        raise EdgeanoError(why)
    path = resolve_model(model)
    cfg = ServeConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, address=address,
                      max_batch=max_batch, max_queue_delay_us=max_queue_delay_us)
    engine = open_engine(str(path), backend=backend, **({"threads": threads} if threads else {}))
    served = ServedModel(name or default_name(path), engine, input_dtype)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"serve: starting Triton for {served.name} ({engine.name}, {engine.meta.get('model', '?')}, "
               f"threshold {engine.threshold:.4g}, input {input_dtype})", err=True)
    server = TritonServer([served], cfg, log_file=triton_log)
    try:
        server.start()
        for note in server.notes:
            click.echo(f"note: {note}", err=True)
        u = server.urls
        click.echo(f"serving {served.name}: {u['http']}  {u['grpc']}  metrics {u['metrics']}  (max batch {max_batch}, "
                   f"queue delay {max_queue_delay_us} us; Ctrl-C stops)", err=True)
        click.echo(f"next: edgeano run --server {u['http']} --model {served.name} --camera 0", err=True)
        while not stop.wait(1.0):
            if not server.is_alive():
                raise EdgeanoError(f"Triton stopped on its own{server.log_tail()}", EXIT_ERROR)
    finally:
        server.stop()
    click.echo("serve: stopped", err=True)
