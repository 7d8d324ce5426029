"""Bad input to `edgeano run` (issue 9's stream cases), as a table of real processes (tests/badinput.py),
plus the cases that need something to happen mid-run: a disk that fills, a folder that goes away,
a camera whose read blocks, a torn events file."""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from badinput import EDGEANO, Case, run_case
from linehelpers import edgeano_run, free_port, read_events, texture_frames, write_clip, write_folder

from edgeano.errors import EXIT_OUTPUT, EXIT_SOURCE, EXIT_USAGE
from edgeano.stream.events import Scored, dumps, event_record


def with_clip(scratch: Path, fx) -> None:
    shutil.copy(fx["clip"], scratch / "clip.avi")


def with_file(scratch: Path, fx) -> None:
    with_clip(scratch, fx)
    (scratch / "afile").write_text("not a folder\n")


def with_unreadable_images(scratch: Path, fx) -> None:
    d = scratch / "broken"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


CASES = [
    # U1: an unwritable --save-video folder is named before the model loads or the source opens
    Case("save-video-folder-cannot-be-made", ["run", "--model", "{onnx}", "--source", "clip.avi", "--save-video", "/proc/edgeano/out.avi"],
         EXIT_OUTPUT, r"--save-video /proc/edgeano/out\.avi: cannot create the folder /proc/edgeano", setup=with_clip),
    Case("save-video-under-a-file", ["run", "--model", "{onnx}", "--source", "clip.avi", "--save-video", "afile/out.avi"],
         EXIT_OUTPUT, r"--save-video afile/out\.avi: cannot create the folder afile", setup=with_file),
    Case("events-under-a-file", ["run", "--model", "{onnx}", "--source", "clip.avi", "--events", "afile/ev.jsonl"],
         EXIT_OUTPUT, r"--events afile/ev\.jsonl: afile is a file, not a folder", setup=with_file),
    Case("save-anomalies-under-a-file", ["run", "--model", "{onnx}", "--source", "clip.avi", "--save-anomalies", "afile/ng"],
         EXIT_OUTPUT, r"--save-anomalies afile/ng: cannot create the folder afile/ng", setup=with_file),
    # D4: ENOSPC on --events stops cleanly with exit 4 and says why
    Case("events-disk-full", ["run", "--model", "{onnx}", "--source", "clip.avi", "--headless", "--events", "/dev/full"],
         EXIT_OUTPUT, r"--events /dev/full: the disk is full; stopped", setup=with_clip, alone=False),
    # U5: nothing readable is a source failure, not a silent exit 0
    Case("only-unreadable-images", ["run", "--model", "{onnx}", "--source", "broken", "--headless"],
         EXIT_SOURCE, r"source broken: nothing could be scored \(all 3 frames/images were unreadable\)",
         setup=with_unreadable_images, alone=False),
    Case("same-source-twice", ["run", "--model", "{onnx}", "--source", "clip.avi", "--source", "clip.avi"],
         EXIT_USAGE, r"source clip\.avi is given twice", setup=with_clip),
    Case("loop-with-a-live-source", ["run", "--model", "{onnx}", "--source", "clip.avi", "--camera", "0", "--loop"],
         EXIT_USAGE, r"--loop restarts files and folders; camera 0 is a live source", setup=with_clip),
    Case("bad-stall-timeout", ["run", "--model", "{onnx}", "--source", "clip.avi", "--stall-timeout", "-1"],
         EXIT_USAGE, r"--stall-timeout.*-1 must be >= 0", setup=with_clip),
    Case("http-token-without-http", ["run", "--model", "{onnx}", "--source", "clip.avi", "--http-token", "x"],
         EXIT_USAGE, r"--http-token needs --http", setup=with_clip),
    Case("bad-http-bind", ["run", "--model", "{onnx}", "--source", "clip.avi", "--http", "localhost:99999"],
         2, r"--http 'localhost:99999': expected \[HOST:\]PORT", setup=with_clip),
    Case("bad-mqtt-url", ["run", "--model", "{onnx}", "--source", "nosuch.mp4", "--mqtt", "mqtt://broker/a/#"],
         2, r"--mqtt 'mqtt://broker/a/#': give a topic without wildcards"),
    Case("bad-opcua-url", ["run", "--model", "{onnx}", "--source", "clip.avi", "--opcua", "opc.tcp://user@host"],
         2, r"give both user and password", setup=with_clip),
]


@pytest.fixture(scope="module")
def frames(texture_data):
    return texture_frames(texture_data)


@pytest.fixture(scope="module")
def clip(frames, tmp_path_factory) -> Path:
    return write_clip(frames, tmp_path_factory.mktemp("badrun") / "clip.avi")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_run(case, gaussian_onnx, clip, tmp_path):
    run_case(case, tmp_path, {"onnx": str(gaussian_onnx), "clip": str(clip)})


def test_events_are_strict_json_even_for_a_nan_score():
    s = Scored(3, 1.5, np.zeros((2, 2, 3), np.uint8), float("nan"), False, float("inf"), 1.0,
               peak={"x": 1, "y": 1, "value": float("nan")})
    line = dumps(event_record(s, "r"))
    rec = json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}"))
    assert rec["score"] is None and rec["threshold"] is None and rec["peak"]["value"] is None


def test_disk_full_under_save_video_exits_4_and_keeps_the_previous_video(gaussian_onnx, frames, tmp_path):
    """D1: OpenCV's writer says nothing when writes fail; the loop reads the file back before the rename.
    The full disk is a file size limit (RLIMIT_FSIZE: Python ignores SIGXFSZ, so writes fail with EFBIG)."""
    folder = write_folder(frames, tmp_path / "frames")
    video = tmp_path / "out.avi"
    video.write_bytes(b"the previous good video")
    limit = 150_000  # bytes: a few dozen 96x80 MJPEG frames

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([str(EDGEANO), "run", "--model", str(gaussian_onnx), "--source", str(folder), "--headless", "--loop",
                        "--max-frames", "300", "--save-video", str(video)], capture_output=True, text=True, timeout=300,
                       preexec_fn=small_disk)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == EXIT_OUTPUT, r.stderr
    assert len(errors) == 1 and "--save-video" in errors[0] and "not written" in errors[0] and "of 300 frames" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert video.read_bytes() == b"the previous good video"  # never replaced by a broken file
    assert not list(tmp_path.glob(".*partial*"))


def test_optional_sink_failing_mid_run_is_counted_and_scoring_goes_on(gaussian_onnx, frames, tmp_path):
    """D5: the --save-anomalies folder turns into a file mid-run; every frame is still scored."""
    folder = write_folder(frames, tmp_path / "frames")
    ng, events = tmp_path / "ng", tmp_path / "ev.jsonl"
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 20, "--max-frames", 60,
                     "--threshold", -1e9, "--events", events, "--save-anomalies", ng, "--print-every", 0.5])
    deadline = time.time() + 60
    while time.time() < deadline and not (events.exists() and len(events.read_text().splitlines()) >= 10):
        assert p.poll() is None, p.communicate()[1]
        time.sleep(0.1)
    ng.rename(tmp_path / "ng-moved")  # atomic, while the sink may be writing
    ng.write_text("in the way")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert len(read_events(events)) == 60
    assert err.count("warning: anomalies write failed") == 1  # warned once
    assert "(" in err and "failed)" in err and "sink anomalies:" in err and "failures" in err  # counted: progress line + summary


def test_torn_last_line_is_never_appended_to(gaussian_onnx, clip, tmp_path):
    """D4: a previous run died mid-line; the next run starts on a new line."""
    events = tmp_path / "ev.jsonl"
    events.write_text('{"schema": 1, "seq": 0}\n{"schema": 1, "se')
    r = subprocess.run([str(EDGEANO), "run", "--model", str(gaussian_onnx), "--source", str(clip), "--headless",
                        "--events", str(events)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = events.read_text().splitlines()
    assert lines[1] == '{"schema": 1, "se'  # the torn fragment stays on its own line
    assert [json.loads(x)["frame"] for x in lines[2:]] == list(range(16))


class StallingMjpegServer:
    """HTTP MJPEG that sends `per_connection` frames and then keeps the connection open, silent:
    a camera whose stream died without closing. OpenCV's read blocks in it."""

    def __init__(self, per_connection: int = 8):
        self.port = free_port()
        self.per_connection = per_connection
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.jpeg = cv2.imencode(".jpg", np.full((80, 96, 3), 120, np.uint8))[1].tobytes()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=fr\r\n\r\n")
            for _ in range(self.per_connection):
                c.sendall(b"--fr\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg) + self.jpeg + b"\r\n")
                time.sleep(0.05)
            self.stop.wait(600)  # stall
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def test_watchdog_treats_a_blocked_live_read_as_lost_and_reconnects(gaussian_onnx, tmp_path):
    server = StallingMjpegServer()
    try:
        t0 = time.time()
        r = subprocess.run([str(EDGEANO), "run", "--model", str(gaussian_onnx), "--source", f"http://127.0.0.1:{server.port}/s.mjpg",
                            "--headless", "--stall-timeout", "1.5", "--max-frames", "12", "--events", str(tmp_path / "ev.jsonl")],
                           capture_output=True, text=True, timeout=120)
        took = time.time() - t0
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert "no frame for 1.5 s; treating it as lost" in r.stderr and "reconnected" in r.stderr, r.stderr
    assert server.connections >= 2 and len(read_events(tmp_path / "ev.jsonl")) == 12
    idx = [e["frame"] for e in read_events(tmp_path / "ev.jsonl")]
    assert idx == sorted(set(idx))  # frame numbers count on over the restart
    assert took < 60  # a 10 s network read timeout per stall would be slower; the watchdog acted first


def test_live_video_is_written_on_the_clock_not_at_the_scoring_rate(tmp_path):
    """A live source scored at 10 fps into a 30-fps video: each frame fills the time it stood for,
    so the video lasts as long as the run did (it played 3x fast before)."""
    from edgeano.stream.sinks.video import VideoSink, count_frames

    sink = VideoSink(tmp_path / "live.avi", fps=30.0, live=True)
    img = np.full((80, 96, 3), 90, np.uint8)
    t0 = 1_000_000.0
    for k in range(10):  # 0.0, 0.1, ... 0.9 s
        sink.write(Scored(k, t0 + 0.1 * k, img, 0.0, False, 1.0, 1.0), img)
    sink.write(Scored(10, t0 + 60.0, img, 0.0, False, 1.0, 1.0), img)  # after a minute-long outage: one frame, not 1800
    sink.close()
    assert count_frames(tmp_path / "live.avi") == 28 + 1  # 0.9 s at 30 fps + the first frame, then the one after the gap
    files = VideoSink(tmp_path / "file.avi", fps=30.0, live=False)
    for k in range(10):
        files.write(Scored(k, t0 + 0.1 * k, img, 0.0, False, 1.0, 1.0), img)
    files.close()
    assert count_frames(tmp_path / "file.avi") == 10  # files: one frame per frame


def test_sink_set_counts_an_optional_sinks_failures_and_survives_its_report():
    from edgeano.stream.sinks.base import Sink, SinkSet

    class Broken(Sink):
        name = "broken"

        def write(self, s, annotated):
            raise OSError("gone")

        def state(self):
            raise RuntimeError("no report")

    class Required(Sink):
        name = "events"
        required = True

        def write(self, s, annotated):
            raise OSError("disk full")

    logs = []
    s = Scored(0, 0.0, np.zeros((2, 2, 3), np.uint8), 1.0, False, 2.0, 1.0)
    guard = SinkSet([Broken()], logs.append)
    for _ in range(3):
        guard.write(s, None)
    assert guard.states()["broken"] == {"state": "state unavailable (RuntimeError)", "failures": 3}
    assert len(logs) == 1 and "broken write failed (OSError: gone)" in logs[0]  # warned once
    with pytest.raises(OSError):
        SinkSet([Required()], logs.append).write(s, None)  # a required sink's failure stops the run
