"""`edgeano run` end to end, as a user runs it: a subprocess where `import torch` fails, on a small
video and an image folder made here from the texture test set, with the exported Gaussian model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeano.errors import EXIT_SOURCE
from edgeano.data.images import list_images, read_image
from edgeano.runtime.engine import Engine

BLOCK = "import sys; sys.modules['torch'] = None; from edgeano.cli.main import main; "
FRAME_WH = (96, 80)  # frames are bigger than the 64 px model input and not square: the loop must resize


def cli_code(args) -> str:
    return BLOCK + f"sys.argv = ['edgeano', 'run'] + {list(map(str, args))!r}; main()"


def run_cli(args, timeout=60):
    return subprocess.run([sys.executable, "-c", cli_code(args)], capture_output=True, text=True, timeout=timeout)


def read_events(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def frames_of(texture_data: Path):
    """Good and defective texture images, interleaved, resized to FRAME_WH."""
    good = list_images(texture_data / "test" / "good")[:8]
    bad = sorted(p for d in (texture_data / "test").iterdir() if d.name != "good" for p in list_images(d))[:8]
    paths = [p for pair in zip(good, bad) for p in pair]
    return [cv2.resize(read_image(p), FRAME_WH, interpolation=cv2.INTER_AREA) for p in paths]


@pytest.fixture(scope="module")
def clip(texture_data, tmp_path_factory) -> Path:
    """A 16-frame MJPEG .avi (pip's and JetPack's OpenCV both write and read it)."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, FRAME_WH)
    for f in frames_of(texture_data):
        w.write(f)
    w.release()
    return path


@pytest.fixture(scope="module")
def folder(texture_data, tmp_path_factory) -> Path:
    """The same frames as PNG files, plus one corrupt file the loop must skip and count."""
    d = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(frames_of(texture_data)):
        cv2.imwrite(str(d / f"{i:03d}.png"), f)
    (d / "007b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return d


@pytest.fixture(scope="module")
def baseline(gaussian_onnx, clip, tmp_path_factory):
    """One default run over the clip: events + annotated video."""
    out = tmp_path_factory.mktemp("baseline")
    r = run_cli(["--model", gaussian_onnx, "--source", clip, "--headless", "--events", out / "ev.jsonl",
                 "--save-video", out / "annotated.avi"])
    assert r.returncode == 0, r.stderr
    return out, r


def test_every_file_frame_scored_like_engine_score(baseline, clip, gaussian_onnx):
    out, r = baseline
    events = read_events(out / "ev.jsonl")
    n = count_frames(clip)
    assert n == 16
    assert [e["frame"] for e in events] == list(range(n))  # none lost, in order
    # the same scores Engine.score gives on the decoded frames (the loop splits it into timed stages)
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(n)]
    with Engine.load(gaussian_onnx) as eng:
        res = eng.score(frames)
    np.testing.assert_allclose([e["score"] for e in events], res.scores, rtol=1e-4, atol=1e-5)
    assert [e["label"] == "NG" for e in events] == list(res.labels)
    assert all(e["threshold"] == pytest.approx(eng.threshold, rel=1e-5) for e in events)
    assert count_frames(out / "annotated.avi") == n
    assert not list(out.glob(".*partial*"))  # the temp video was renamed
    assert "summary: 16 frames" in r.stderr and "p95" in r.stderr


def test_threshold_flag_changes_labels(baseline, clip, gaussian_onnx, tmp_path):
    scores = np.array([e["score"] for e in read_events(baseline[0] / "ev.jsonl")])
    thr = float(np.median(scores))
    r = run_cli(["--model", gaussian_onnx, "--source", clip, "--headless", "--threshold", thr,
                 "--events", tmp_path / "ng.jsonl", "--events-only-anomalies"])
    assert r.returncode == 0, r.stderr
    ng = read_events(tmp_path / "ng.jsonl")
    expected = [i for i, s in enumerate(scores) if s >= thr]
    assert 0 < len(expected) < len(scores)
    assert [e["frame"] for e in ng] == expected
    assert all(e["label"] == "NG" and e["threshold"] == pytest.approx(thr) for e in ng)


def test_folder_source_skips_unreadable_and_saves_anomalies(folder, gaussian_onnx, tmp_path):
    n_good = len([p for p in list_images(folder) if "corrupt" not in p.name])
    r = run_cli(["--model", gaussian_onnx, "--source", folder, "--headless", "--threshold", -1e9, "--roi", "8,4,72,64",
                 "--events", tmp_path / "ev.jsonl", "--save-anomalies", tmp_path / "ng"])
    assert r.returncode == 0, r.stderr
    events = read_events(tmp_path / "ev.jsonl")
    assert len(events) == n_good and all(e["label"] == "NG" for e in events)
    assert "bad 1" in r.stderr  # the corrupt file was counted and skipped
    saved = sorted((tmp_path / "ng").glob("*.jpg"))
    assert len(saved) == 2 * n_good  # the frame and its heatmap overlay
    heat = cv2.imread(str(next(p for p in saved if p.name.endswith("_heatmap.jpg"))))
    assert heat.shape[:2] == (FRAME_WH[1], FRAME_WH[0])


def test_roi_changes_what_is_scored(folder, gaussian_onnx, tmp_path):
    whole = run_cli(["--model", gaussian_onnx, "--source", folder, "--headless", "--events", tmp_path / "a.jsonl"])
    part = run_cli(["--model", gaussian_onnx, "--source", folder, "--headless", "--roi", "0,0,40,40", "--events", tmp_path / "b.jsonl"])
    assert whole.returncode == 0 and part.returncode == 0, whole.stderr + part.stderr
    a = [e["score"] for e in read_events(tmp_path / "a.jsonl")]
    b = [e["score"] for e in read_events(tmp_path / "b.jsonl")]
    assert len(a) == len(b) and not np.allclose(a, b)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_mid_run_leaves_valid_outputs(sig, code, folder, gaussian_onnx, tmp_path):
    events, video = tmp_path / "ev.jsonl", tmp_path / "out.mp4"
    # --loop --fps 25: an endless, paced source, so the signal surely lands mid-run
    p = subprocess.Popen([sys.executable, "-c", cli_code(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop",
                                                          "--fps", 25, "--events", events, "--save-video", video])],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 40
        while time.time() < deadline and (not events.exists() or len(events.read_text().splitlines()) < 20):
            assert p.poll() is None, p.communicate()[1]
            time.sleep(0.2)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    ev = read_events(events)  # every line parses
    assert len(ev) >= 20
    idx = [e["frame"] for e in ev]
    assert idx == sorted(set(idx)) and 8 not in idx  # in order, once each; position 8 is the corrupt file
    assert video.exists() and count_frames(video) == len(ev)  # finalised, playable, one frame per event
    assert not list(tmp_path.glob(".*partial*"))
    assert "summary:" in err and "Traceback" not in err


def test_missing_camera_exits_3_with_one_line(gaussian_onnx):
    r = run_cli(["--model", gaussian_onnx, "--camera", 97, "--headless"])
    assert r.returncode == EXIT_SOURCE
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "camera 97" in lines[0] and lines[0].startswith("error:"), r.stderr


def test_missing_file_source_exits_3(gaussian_onnx, tmp_path):
    r = run_cli(["--model", gaussian_onnx, "--source", tmp_path / "nope.mp4"])
    assert r.returncode == EXIT_SOURCE and "source not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["--roi", "1,2,3"], "--roi"),
    (["--roi", "a,b,c,d"], "--roi"),
    (["--roi", "0,0,4,4"], "--roi"),
    (["--events-only-anomalies"], "--events-only-anomalies needs --events"),
    (["--save-video", "out.txt"], "--save-video"),
    (["--loop", "--source", "rtsp://127.0.0.1:9/x"], "--loop"),
])
def test_bad_flags_give_one_line(args, msg, clip, gaussian_onnx):
    from click.testing import CliRunner

    from edgeano.cli.run import command

    base = ["--model", str(gaussian_onnx), "--headless"]
    if "rtsp://127.0.0.1:9/x" not in args:
        base += ["--source", str(clip)]
    res = CliRunner().invoke(command, base + args)
    assert res.exit_code != 0
    out = res.output.strip().splitlines()
    assert len(out) == 1 and msg in out[0] and out[0].startswith("error:"), res.output


def test_roi_outside_frame_gives_one_line(clip, gaussian_onnx):
    r = run_cli(["--model", gaussian_onnx, "--source", clip, "--headless", "--roi", "50,50,64,64"])
    assert r.returncode == 2  # a bad flag (edgeano.errors.EXIT_USAGE)
    assert "lies outside the 96x80 frame" in r.stderr and "Traceback" not in r.stderr


def test_overlay_draws_on_a_copy_with_heatmap_in_the_roi():
    from edgeano.data.preprocess import Preprocess
    from edgeano.stream.overlay import MAX_ALPHA, MIN_ALPHA, NG_COLOR, Overlay, heatmap_alpha

    frame = np.full((80, 96, 3), 100, np.uint8)
    amap = np.zeros((32, 32), np.float32)
    amap[:16, :16] = 1.0  # hot top-left quarter of the ROI
    out = Overlay(1.0, Preprocess(size=(32, 32)), normal_ref=0.5).render(frame, 2.0, True, amap, roi=(16, 8, 64, 64), fps=12.0)
    assert (frame == 100).all()  # the scored frame is never drawn on
    assert tuple(out[2, 2]) == NG_COLOR  # the NG banner
    hot, cold = out[30, 30].astype(int), out[60, 70].astype(int)  # inside the ROI: top-left vs bottom-right
    assert hot[2] > hot[0] and cold[0] > cold[2]  # JET: red where the map is high, blue where low
    assert (out[75, 5] == 100).all()  # outside the ROI and the text: untouched
    assert heatmap_alpha(0.5, 1.0, 0.5) == MIN_ALPHA and heatmap_alpha(3.0, 1.0, 0.5) == MAX_ALPHA
    assert MIN_ALPHA < heatmap_alpha(0.75, 1.0, 0.5) < MAX_ALPHA and heatmap_alpha(5.0, float("inf"), None) == MIN_ALPHA


def test_loop_restarts_the_file_until_max_frames(clip, gaussian_onnx, tmp_path):
    r = run_cli(["--model", gaussian_onnx, "--source", clip, "--headless", "--loop", "--max-frames", 40, "--events", tmp_path / "ev.jsonl"])
    assert r.returncode == 0, r.stderr
    ev = read_events(tmp_path / "ev.jsonl")
    assert [e["frame"] for e in ev] == list(range(40))  # 16-frame clip, 2.5 passes, indices count on
    scores = [e["score"] for e in ev]
    np.testing.assert_allclose(scores[16:32], scores[:16], rtol=1e-5)  # the second pass scores the same frames
