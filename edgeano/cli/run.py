"""`edgeano run`: score every frame of one or more cameras, streams, video files or image folders.

Parses and validates the flags, then calls edgeano.stream.app.run_stream (the library does the rest).
Exit codes (edgeano.errors): 0 finished (end of file, --max-frames, `q`, SIGTERM), 130 SIGINT (Ctrl-C),
1 runtime failure, 2 bad flag or model, 3 a source will not open or a live source stayed lost after
--reconnect-tries attempts, 4 an output (--events, --save-video) could not be written (disk full).
Outputs are finalised in every case.
"""

from __future__ import annotations

import sys

import click

from edgeano.cli.common import (FINITE, POSITIVE, Number, Threads, backend_option, friendly_errors, output_file, precision_option,
                                runner_options, server_option)


def log(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("run")
@click.option("--model", "-m", required=True, help="Artifact: .onnx, .engine, or a model name (newest runs/<name>/).")
@click.option("--camera", type=int, multiple=True, help="V4L2 camera index (/dev/videoN); repeat for several cameras.")
@click.option("--source", "-s", multiple=True,
              help="URI: /dev/videoN, v4l2:///dev/videoN, csi://N, rtsp://..., a video file, an image folder, or a GStreamer "
                   "pipeline ('... ! appsink' or gst://...). Repeat for several sources: one batched inference call scores them all.")
@click.option("--width", type=int, default=None, help="Requested capture width (cameras, csi://).")
@click.option("--height", type=int, default=None, help="Requested capture height (cameras, csi://).")
@click.option("--fps", type=POSITIVE, default=None, help="Requested camera FPS; for files/folders: play at this rate instead of as fast as possible.")
@click.option("--headless", is_flag=True, help="No window (the default when there is no display or OpenCV has no GUI).")
@click.option("--save-video", type=click.Path(dir_okay=False), default=None,
              help="Annotated video (.mp4/.avi/.mkv), checked and finalised on exit; several sources: NAME.0.mp4, NAME.1.mp4 ...")
@click.option("--events", type=click.Path(dir_okay=False), default=None, callback=output_file(), help="Append one JSON line per frame to this file (docs/events.md).")
@click.option("--events-only-anomalies", is_flag=True, help="Write only NG frames to --events.")
@click.option("--save-anomalies", type=click.Path(file_okay=False), default=None, help="Save NG frames, heatmaps (and map masks) here.")
@click.option("--mqtt", default=None, help="Publish events: mqtt://[user:pass@]HOST[:1883]/TOPIC[?qos=1&only=ng] (mqtts:// for TLS).")
@click.option("--opcua", default=None, help="Serve the verdict to PLCs: opc.tcp://[user:pass@]HOST[:4840].")
@click.option("--http", default=None, help="Live page: [HOST:]PORT (127.0.0.1 unless a host is given; elsewhere it needs a token).")
@click.option("--http-token", default=None, envvar="EDGEANO_HTTP_TOKEN", help="Token for --http (made up and printed when bound beyond localhost).")
@click.option("--threshold", type=FINITE, default=None, help="Override the artifact's threshold (score >= threshold is NG).")
@click.option("--roi", default=None, help="Score only this x,y,w,h region of the frame.")
@click.option("--max-frames", type=int, default=None, help="Stop after this many scored frames (all sources together).")
@click.option("--loop", "loop_", is_flag=True, help="Restart a video file or folder at its end.")
@backend_option
@precision_option
@click.option("--threads", type=Threads(), default=None,
              help="CPU inference threads (ONNX Runtime / OpenVINO). Default: ONNX Runtime every core, its idle threads "
                   "sleeping rather than spinning on the core that decodes the next frame; OpenVINO one core fewer "
                   "than the machine has.")
@server_option
@click.option("--reconnect-tries", type=int, default=10, show_default=True,
              help="Live source lost: reconnect with backoff 0.5 s doubling to 30 s, give up (exit 3) after this many tries.")
@click.option("--stall-timeout", type=Number(0), default=10.0, show_default=True,
              help="A live source whose read has not returned for this many seconds counts as lost (0 = no watchdog).")
@click.option("--print-every", type=POSITIVE, default=5.0, show_default=True, help="Seconds between progress lines (stderr).")
@friendly_errors
def command(model, camera, source, width, height, fps, headless, save_video, events, events_only_anomalies, save_anomalies,
            mqtt, opcua, http, http_token, threshold, roi, max_frames, loop_, backend, precision, threads, server, reconnect_tries,
            stall_timeout, print_every):
    """Score every frame from cameras, streams, video files or image folders.

    \b
    edgeano run --model model.onnx --camera 0
    edgeano run --model model.engine --source csi://0 --save-video out.mp4 --events events.jsonl
    edgeano run --model model.onnx --source clip.mp4 --headless --roi 100,50,320,240
    edgeano run --model model.onnx --source rtsp://cam1/s --source rtsp://cam2/s --mqtt mqtt://broker/line1 --http 8080

    Exit codes: 0 done (end of file, --max-frames, q, SIGTERM), 130 Ctrl-C, 1 runtime failure, 2 bad flag or
    model, 3 a source will not open or stayed lost after --reconnect-tries, 4 an output could not be written.
    Outputs are finalised in every case.
    """
    from edgeano.stream.app import RunOptions, parse_roi, run_stream

    opts = RunOptions(model=model, sources=list(source), cameras=list(camera), width=width, height=height, fps=fps,
                      headless=headless, save_video=save_video, events=events, events_only_anomalies=events_only_anomalies,
                      save_anomalies=save_anomalies, threshold=threshold, roi=parse_roi(roi), max_frames=max_frames, loop=loop_,
                      backend=backend, runner=runner_options(backend, precision, threads), server=server, reconnect_tries=reconnect_tries, print_every=print_every, stall_timeout=stall_timeout,
                      mqtt=mqtt, opcua=opcua, http=http, http_token=http_token)
    sys.exit(run_stream(opts, log))
