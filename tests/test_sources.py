"""Sources by URI, and the loop's live-source behaviour (newest frame, reconnect with backoff) with a
stand-in camera: a source object that yields numbered frames and can be made to drop out."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeano.errors import EXIT_SOURCE, EdgeanoError
from edgeano.runtime.engine import Engine
from edgeano.stream.loop import FrameQueue, LatestFrame, LoopConfig, StreamLoop, END
from edgeano.stream.sources import SourceSpec, opencv_has, open_source, parse_source
from edgeano.stream.stats import LoopStats, Reservoir


@pytest.mark.parametrize("uri,kind,live,target", [
    ("/dev/video2", "camera", True, 2),
    ("v4l2:///dev/video1", "camera", True, 1),
    ("3", "camera", True, 3),
    ("rtsp://10.0.0.5:8554/line1", "network", True, "rtsp://10.0.0.5:8554/line1"),
    ("gst://videotestsrc ! videoconvert ! appsink", "gstreamer", True, "videotestsrc ! videoconvert ! appsink"),
    ("filesrc location=a.mp4 ! decodebin ! videoconvert ! appsink", "gstreamer", False, None),
])
def test_parse_uris(uri, kind, live, target):
    s = parse_source(source=uri)
    assert (s.kind, s.live) == (kind, live)
    if target is not None:
        assert s.target == target


def test_parse_camera_csi_files_and_folders(tmp_path):
    assert parse_source(camera=0).target == 0
    csi = parse_source(source="csi://1", width=1920, height=1080, fps=30)
    assert csi.kind == "csi" and csi.live
    assert "nvarguscamerasrc sensor-id=1" in csi.target and "width=1920,height=1080,framerate=30/1" in csi.target
    assert csi.target.rstrip().endswith("appsink drop=true max-buffers=1 sync=false")
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    assert parse_source(source=str(tmp_path / "a.mp4")).kind == "file"
    assert parse_source(source=f"file://{tmp_path / 'a.mp4'}").kind == "file"
    assert parse_source(source=str(tmp_path / "b.png")).kind == "folder"
    assert not parse_source(source=str(tmp_path)).live
    with pytest.raises(EdgeanoError) as e:
        parse_source(source=str(tmp_path / "missing.mp4"))
    assert e.value.exit_code == EXIT_SOURCE
    with pytest.raises(EdgeanoError):
        parse_source(source="csi://left")
    with pytest.raises(EdgeanoError):
        parse_source(camera=0, source="x.mp4")


@pytest.mark.skipif(opencv_has("GStreamer"), reason="this OpenCV has GStreamer (JetPack's): the message is for pip's builds")
def test_gstreamer_source_without_gstreamer_says_so():
    with pytest.raises(EdgeanoError) as e:
        open_source(parse_source(source="csi://0"))
    assert e.value.exit_code == EXIT_SOURCE and "without GStreamer" in str(e.value) and "\n" not in str(e.value)


def test_empty_folder_will_not_open(tmp_path):
    with pytest.raises(EdgeanoError) as e:
        open_source(parse_source(source=str(tmp_path)))
    assert e.value.exit_code == EXIT_SOURCE and "no images" in str(e.value)


def test_latest_frame_keeps_only_the_newest_and_queue_keeps_all():
    stop = threading.Event()
    slot = LatestFrame()
    for i in range(10):
        slot.put(i, stop)
    assert slot.get(0.01) == 9 and slot.dropped == 9
    assert slot.get(0.01) is None  # nothing new yet
    slot.close(stop)
    assert slot.get(0.01) is END

    q = FrameQueue(3)
    got = []
    reader = threading.Thread(target=lambda: [q.put(i, stop) for i in range(20)] and q.close(stop))
    reader.start()
    while True:  # a slow consumer: the reader waits (backpressure), nothing is lost
        item = q.get(1.0)
        if item is END:
            break
        got.append(item)
        time.sleep(0.002)
    reader.join()
    assert got == list(range(20))


class StandInCamera:
    """Numbered 96x80 frames at ~`fps`; goes dark after `drop_after` frames; `opens_left` limits reopening."""

    def __init__(self, fps=200.0, drop_after=None, opens_left=100):
        self.spec = SourceSpec("standin://cam", "camera", 0, True)
        self.fps = fps
        self.drop_after = drop_after
        self.opens_left = opens_left
        self.n = 0
        self.is_open = False

    def open(self):
        if self.opens_left <= 0:
            raise EdgeanoError("cannot open source standin://cam", 2)
        self.opens_left -= 1
        self.is_open = True
        self.served = 0

    def read(self):
        if not self.is_open or (self.drop_after is not None and self.served >= self.drop_after):
            return "end", None
        time.sleep(1.0 / self.fps)
        self.served += 1
        self.n += 1
        img = np.full((80, 96, 3), (self.n * 7) % 256, np.uint8)
        return "ok", img

    def close(self):
        self.is_open = False


class SlowSink:
    needs_overlay = False

    def __init__(self, delay):
        self.delay = delay
        self.seen = []

    def write(self, scored, annotated):
        time.sleep(self.delay)
        self.seen.append((scored.index, scored.latency_ms))
        return False

    def close(self):
        pass


def test_live_source_slow_consumer_sees_newest_frames_without_growing_lag(gaussian_onnx):
    cam = StandInCamera(fps=200.0)
    cam.open()
    sink = SlowSink(0.03)  # ~30 fps consumer for a 200 fps camera
    with Engine.load(gaussian_onnx) as eng:
        summary = StreamLoop(eng, cam, [sink], LoopConfig(max_frames=15), log=lambda s: None).run()
    idx = [i for i, _ in sink.seen]
    assert summary["frames"] == 15 and summary["dropped"] > 15
    assert idx == sorted(idx) and idx[-1] - idx[0] > 2 * len(idx)  # frames were skipped, not queued
    late = [lat for _, lat in sink.seen[5:]]
    assert max(late) < 500, late  # latency stays about one frame's work, it does not accumulate


def test_lost_live_source_reconnects_then_gives_up_with_exit_2(gaussian_onnx):
    cam = StandInCamera(fps=50.0, drop_after=5, opens_left=3)  # first open + 2 reconnects, then it stays dark
    cam.open()
    logs = []
    sink = SlowSink(0.0)
    cfg = LoopConfig(reconnect_tries=3, backoff_s=(0.01, 0.04))
    with Engine.load(gaussian_onnx) as eng:
        loop = StreamLoop(eng, cam, [sink], cfg, log=logs.append)
        with pytest.raises(EdgeanoError) as e:
            loop.run()
    assert e.value.exit_code == EXIT_SOURCE and "gave up after 3 reconnect attempts" in str(e.value)
    assert loop.last_summary["reconnects"] == 2
    assert loop.last_summary["frames"] >= 3  # frames from before and between the drop-outs were scored
    assert any("reconnected" in line for line in logs)


def test_reservoir_and_stats_stay_bounded():
    r = Reservoir(k=100, seed=1)
    for v in range(100_000):
        r.add(float(v))
    assert len(r.values) == 100 and r.n == 100_000
    p50, _ = r.percentiles()
    assert 30_000 < p50 < 70_000  # a uniform sample of the whole stream, not its start or end
    st = LoopStats(recent=16, reservoir=64)
    for _ in range(5000):
        st.add("infer", 1.0)
        st.frame_done(False)
    assert len(st.recent["infer"]) == 16 and len(st.whole["infer"].values) == 64 and len(st.frame_times) == 16
    assert st.summary()["stages_ms"]["infer"] == {"p50": 1.0, "p95": 1.0}


def test_rtsp_over_gstreamer_has_read_timeouts():
    from edgeano.stream.sources import network_pipeline

    p = network_pipeline("rtsp://10.0.0.5:8554/line1", timeout_s=5)
    assert p.startswith('rtspsrc location="rtsp://10.0.0.5:8554/line1"') and "timeout=5000000" in p and "tcp-timeout=5000000" in p
    assert p.endswith("appsink drop=true max-buffers=1 sync=false")
    assert network_pipeline("http://cam/stream.mjpg").startswith("uridecodebin uri=http://cam/stream.mjpg ! ")
