"""--mqtt against a real Mosquitto broker started here on a free loopback port."""

from __future__ import annotations

import time

import pytest
from linehelpers import Subscriber, broker_or_skip, edgeano_run, read_events, texture_frames, write_clip, write_folder

from edgeano.errors import EXIT_USAGE


@pytest.fixture(scope="module")
def frames(texture_data):
    return texture_frames(texture_data)


@pytest.fixture()
def broker(tmp_path):
    b = broker_or_skip(tmp_path / "broker")
    yield b
    b.stop()


def test_every_event_arrives_once_with_qos1_and_status_is_retained(broker, frames, gaussian_onnx, tmp_path):
    clip = write_clip(frames, tmp_path / "clip.avi")
    topic = "factory/line1"
    sub = Subscriber(broker.port, [topic])
    assert sub.subscribed.wait(10)
    try:
        p = edgeano_run(["--model", gaussian_onnx, "--source", clip, "--headless", "--events", tmp_path / "ev.jsonl",
                         "--fps", 20, "--print-every", 0.2, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/{topic}?qos=1"])
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        got = sub.wait_for(topic, 16)
    finally:
        sub.close()
    events = read_events(tmp_path / "ev.jsonl")
    assert len(events) == 16
    assert sorted(m[1]["seq"] for m in got) == list(range(16))  # every frame's event, exactly once
    assert [m[1] for m in sorted(got, key=lambda m: m[1]["seq"])] == events  # the same records as --events
    assert "mqtt: connected" in err and "sink mqtt: closed, delivered 16, queued 0, dropped 0" in err
    late = Subscriber(broker.port, [f"{topic}/status"], client_id="late-reader")  # a newcomer gets the retained status
    try:
        status = late.wait_for(f"{topic}/status", 1, timeout=10)
    finally:
        late.close()
    assert status and status[-1][3] is True  # retained
    doc = status[-1][1]
    assert doc["state"] == "stopped" and doc["frames"] == 16 and doc["ng"] == sum(e["label"] == "NG" for e in events)
    assert doc["sources"][0]["name"] == str(clip) and doc["sinks"]["mqtt"]["state"].startswith("connected")
    assert "mqtt connected, delivered" in err  # the sink's state in the progress line


def test_broker_restart_mid_run_loses_no_event_within_the_queue(broker, frames, gaussian_onnx, tmp_path):
    folder = write_folder(frames, tmp_path / "frames")
    topic = "factory/line2"
    sub = Subscriber(broker.port, [topic], client_id="restart-sub")
    assert sub.subscribed.wait(10)
    n = 100
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 20, "--max-frames", n,
                     "--print-every", 0.5, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/{topic}?qos=1&queue=1000"])
    try:
        sub.wait_for(topic, 20, timeout=60)
        broker.stop()  # mid-run: the run goes on, events wait in the sink's queue
        time.sleep(1.5)
        broker.start()
        _, err = p.communicate(timeout=120)
        got = sub.wait_for(topic, n, timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        sub.close()
    assert p.returncode == 0, err
    seqs = {m[1]["seq"] for m in got}
    assert seqs == set(range(n)), f"missing {sorted(set(range(n)) - seqs)}\n{err}"  # QoS 1: at least once, none lost
    assert "mqtt: lost" in err and "mqtt: reconnected" in err and "reconnecting, delivered" in err  # the state showed in the progress line
    assert f"summary: {n} frames" in err


def test_broker_that_is_not_there_never_stops_inspection(frames, gaussian_onnx, tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'edgeano[line]')")
    from linehelpers import free_port

    clip = write_clip(frames, tmp_path / "clip.avi")
    p = edgeano_run(["--model", gaussian_onnx, "--source", clip, "--headless", "--events", tmp_path / "ev.jsonl",
                     "--fps", 20, "--print-every", 0.2, "--mqtt", f"mqtt://127.0.0.1:{free_port()}/x?queue=5"])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert len(read_events(tmp_path / "ev.jsonl")) == 16
    assert "sink mqtt: closed, delivered 0, queued 5, dropped 11" in err and "mqtt connecting, delivered 0" in err  # the bounded queue, drops counted
    assert "events still queued at exit were not delivered" in err


def test_mqtts_checks_the_brokers_certificate(frames, gaussian_onnx, tmp_path):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make the test certificates)")
    from linehelpers import make_tls_certs

    certs = make_tls_certs(tmp_path / "certs")
    broker = broker_or_skip(tmp_path / "tls-broker", tls=certs)
    clip = write_clip(frames, tmp_path / "clip.avi")
    try:
        good = edgeano_run(["--model", gaussian_onnx, "--source", clip, "--headless", "--fps", 20, "--print-every", 0.2,
                            "--mqtt", f"mqtts://127.0.0.1:{broker.port}/tls/line?ca={certs['cafile']}"])
        _, err = good.communicate(timeout=120)
        assert good.returncode == 0, err
        assert "mqtt: connected to mqtts://127.0.0.1" in err and "sink mqtt: closed, delivered 16, queued 0, dropped 0" in err
        untrusted = edgeano_run(["--model", gaussian_onnx, "--source", clip, "--headless",
                                 "--mqtt", f"mqtts://127.0.0.1:{broker.port}/tls/line"])  # system CAs: not ours
        _, err2 = untrusted.communicate(timeout=120)
    finally:
        broker.stop()
    assert untrusted.returncode == 0, err2  # inspection went on ...
    assert "mqtt: connected" not in err2 and "mqtt: cannot connect" in err2
    assert "sink mqtt: closed, delivered 0, queued 16, dropped 0" in err2  # ... but nothing went to an unverified broker


@pytest.mark.parametrize("url,msg", [
    ("http://broker/x", "expected mqtt://"),
    ("mqtt://broker", "give a topic"),
    ("mqtt://broker/a/#", "give a topic"),
    ("mqtt://broker/a?qos=3", "qos must be 0, 1 or 2"),
    ("mqtt://broker/a?only=ok", "only must be ng or all"),
    ("mqtt://broker/a?bogus=1", "unknown option"),
])
def test_bad_mqtt_urls_are_refused_in_one_line(url, msg):
    from edgeano.errors import EdgeanoError
    from edgeano.stream.sinks.mqtt import parse_mqtt_url

    with pytest.raises(EdgeanoError) as e:
        parse_mqtt_url(url)
    assert e.value.exit_code == EXIT_USAGE and msg in str(e.value) and "\n" not in str(e.value)


def test_mqtt_url_parts():
    from edgeano.stream.sinks.mqtt import parse_mqtt_url

    t = parse_mqtt_url("mqtts://line%401:p%3Ass@broker.local/factory/line1?qos=0&only=ng&queue=50")
    assert (t.host, t.port, t.topic, t.qos, t.only_ng, t.tls, t.user, t.password, t.queue) == (
        "broker.local", 8883, "factory/line1", 0, True, True, "line@1", "p:ss", 50)
    assert t.status_topic == "factory/line1/status" and "p:ss" not in t.describe()
    assert parse_mqtt_url("mqtt://10.0.0.2:1884/a").port == 1884
