"""Several sources in one `edgeano run`: one batched inference call, per-source events, videos and counters."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from linehelpers import edgeano_run, read_events, texture_frames, write_clip, write_folder

from edgeano.errors import EdgeanoError
from edgeano.runtime.engine import Engine
from edgeano.stream.loop import LoopConfig, StreamLoop
from edgeano.stream.sinks.video import count_frames
from edgeano.stream.sources import SourceSpec, open_source, parse_source


@pytest.fixture(scope="module")
def frames(texture_data):
    return texture_frames(texture_data)


@pytest.fixture(scope="module")
def dynamic_onnx(gaussian_onnx, tmp_path_factory):
    """The Gaussian fixture with a dynamic batch dimension (the export's graph says batch 1)."""
    import onnx

    from edgeano.artifact import load_onnx

    m = load_onnx(gaussian_onnx)
    for t in list(m.graph.input) + list(m.graph.output):
        t.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(m)
    path = tmp_path_factory.mktemp("dyn") / "gaussian_dynamic.onnx"
    onnx.save(m, str(path))
    return path


def test_two_sources_in_one_run_keep_their_own_events_videos_and_counters(frames, dynamic_onnx, tmp_path):
    clip = write_clip(frames, tmp_path / "clip.avi")
    folder = write_folder(frames[::-1], tmp_path / "frames")  # the same frames, reversed
    p = edgeano_run(["--model", dynamic_onnx, "--source", clip, "--source", folder, "--headless",
                     "--events", tmp_path / "ev.jsonl", "--save-video", tmp_path / "out.avi"])
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err
    events = read_events(tmp_path / "ev.jsonl")
    by_source = {s: [e for e in events if e["source"] == s] for s in (str(clip), str(folder))}
    assert [e["frame"] for e in by_source[str(clip)]] == list(range(16))  # every frame of each, in order
    assert [e["frame"] for e in by_source[str(folder)]] == list(range(16))
    assert sorted(e["seq"] for e in events) == list(range(32))
    with Engine.load(dynamic_onnx) as eng:
        cap = cv2.VideoCapture(str(clip))
        decoded = [cap.read()[1] for _ in range(16)]
        ref_clip = eng.score(decoded).scores
        ref_folder = eng.score(frames[::-1]).scores
    np.testing.assert_allclose([e["score"] for e in by_source[str(clip)]], ref_clip, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([e["score"] for e in by_source[str(folder)]], ref_folder, rtol=1e-4, atol=1e-5)
    assert count_frames(tmp_path / "out.0.avi") == 16 and count_frames(tmp_path / "out.1.avi") == 16
    assert not (tmp_path / "out.avi").exists()
    assert f"source {clip}: 16 frames" in err and f"source {folder}: 16 frames" in err


def test_frames_of_all_sources_go_through_one_inference_call(frames, dynamic_onnx, tmp_path):
    folders = [write_folder(frames, tmp_path / f"cam{k}") for k in range(3)]
    seen = []

    class BatchProbe:
        needs_overlay = False

        def write(self, scored, annotated):
            seen.append(scored.source_index)
            return False

        def close(self):
            pass

    with Engine.load(dynamic_onnx) as eng:
        calls = []
        infer = eng.runner.infer
        eng.runner.infer = lambda x: (calls.append(x.shape[0]), infer(x))[1]
        sources = [open_source(parse_source(source=str(f))) for f in folders]
        summary = StreamLoop(eng, sources, [BatchProbe()], LoopConfig(print_every_s=3600), log=lambda s: None).run()
    assert summary["frames"] == 48 and [s["frames"] for s in summary["sources"]] == [16, 16, 16]
    assert summary["batches"] == len(calls) and max(calls) == 3 and sum(calls) == 48
    assert len(calls) <= 24  # most calls score several sources' frames together


class BadThenGood:
    """A live stand-in: its first connection yields only unreadable frames, the next ones one bad frame then good ones."""

    def __init__(self):
        self.spec = SourceSpec("standin://flaky", "camera", 0, True)
        self.fps = 100.0
        self.opens = 0

    def open(self):
        self.opens += 1
        self.n = 0

    def read(self):
        self.n += 1
        if self.opens == 1:
            return "bad", None
        if self.n == 1:
            return "bad", None
        time.sleep(0.002)
        return "ok", np.full((80, 96, 3), 100, np.uint8)

    def close(self):
        pass


def test_bad_frame_count_starts_again_after_a_reconnect(gaussian_onnx):
    cam = BadThenGood()
    cam.open()
    with Engine.load(gaussian_onnx) as eng:
        summary = StreamLoop(eng, cam, [], LoopConfig(max_frames=20, backoff_s=(0.01, 0.02)), log=lambda s: None,
                             source_factory=lambda spec: cam).run()
    assert summary["frames"] == 20
    assert summary["reconnects"] == 1  # one bad frame after the reconnect is not another 1000 in a row
    assert summary["bad_frames"] == 1001


def test_sources_that_end_early_do_not_stop_the_others(frames, gaussian_onnx, tmp_path):
    short = write_folder(frames[:4], tmp_path / "short")
    long_ = write_folder(frames, tmp_path / "long")
    with Engine.load(gaussian_onnx) as eng:
        sources = [open_source(parse_source(source=str(short))), open_source(parse_source(source=str(long_)))]
        summary = StreamLoop(eng, sources, [], LoopConfig(print_every_s=3600), log=lambda s: None).run()
    assert [s["frames"] for s in summary["sources"]] == [4, 16] and [s["state"] for s in summary["sources"]] == ["ended", "ended"]


def test_an_unreadable_source_beside_a_good_one_exits_3_after_the_good_one_is_scored(frames, gaussian_onnx, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    good = write_folder(frames, tmp_path / "good")
    logs = []
    with Engine.load(gaussian_onnx) as eng:
        loop = StreamLoop(eng, [open_source(parse_source(source=str(broken))), open_source(parse_source(source=str(good)))], [],
                          LoopConfig(print_every_s=3600), log=logs.append)
        with pytest.raises(EdgeanoError) as e:
            loop.run()
    assert e.value.exit_code == 3 and "nothing could be scored" in str(e.value)
    assert loop.last_summary["sources"][1]["frames"] == 16
    assert any("the other sources go on" in ln for ln in logs)
