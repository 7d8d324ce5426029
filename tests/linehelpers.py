"""Real parts for the line-sink tests: a Mosquitto broker on a free loopback port, an MQTT
subscriber, `edgeano run` as a process, and small frame sources made from the texture test set."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import cv2

from edgeano.data.images import list_images, read_image

FRAME_WH = (96, 80)
EDGEANO = Path(sys.executable).with_name("edgeano")


def free_ports(n: int):
    """n distinct free TCP ports on 127.0.0.1 (all bound at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def texture_frames(texture_data: Path, n_good: int = 8, n_bad: int = 8):
    """Good and defective texture images, interleaved, resized to FRAME_WH."""
    good = list_images(texture_data / "test" / "good")[:n_good]
    bad = sorted(p for d in (texture_data / "test").iterdir() if d.name != "good" for p in list_images(d))[:n_bad]
    paths = [p for pair in zip(good, bad) for p in pair]
    return [cv2.resize(read_image(p), FRAME_WH, interpolation=cv2.INTER_AREA) for p in paths]


def write_clip(frames, path: Path, fps: float = 10) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_WH)
    for f in frames:
        w.write(f)
    w.release()
    return path


def write_folder(frames, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return folder


def edgeano_run(args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([str(EDGEANO), "run", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def read_events(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Mosquitto:
    """A real broker on 127.0.0.1:port with persistence in `folder`; stop() and start() again keep its sessions."""

    def __init__(self, folder: Path, port: Optional[int] = None, tls: Optional[dict] = None):
        self.exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        self.folder = folder
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {folder}/", "max_queued_messages 100000"]
        if tls:  # {"cafile": ..., "certfile": ..., "keyfile": ...}: this listener speaks TLS only
            lines += [f"{k} {v}" for k, v in tls.items()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # as root it would switch to a 'mosquitto' user that cannot write here
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "broker.log", "a"))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'broker.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its sessions and queued messages
            self.proc.wait(10)


class Subscriber:
    """A persistent-session QoS 1 subscriber that keeps every message it gets, reconnecting on its own."""

    def __init__(self, port: int, topics: List[str], client_id: str = "edgeano-test-sub"):
        import paho.mqtt.client as mqtt

        self.messages = []  # (topic, payload dict, receive time.time())
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.topics = topics
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.1, 1.0)
        c.on_connect = lambda cl, u, f, rc, p=None: (cl.subscribe([(t, 1) for t in topics]), self.subscribed.set())
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg):
        t = time.time()
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), t, msg.retain))

    def on(self, topic: str):
        with self.lock:
            return [m for m in self.messages if m[0] == topic]

    def wait_for(self, topic: str, n: int, timeout: float = 20.0) -> list:
        deadline = time.time() + timeout
        while time.time() < deadline and len({m[1].get("seq") for m in self.on(topic)}) < n:
            time.sleep(0.05)
        return self.on(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_tls_certs(folder: Path) -> dict:
    """A CA and a server certificate for 127.0.0.1 (IP SAN), made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=edgeano test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    return {"cafile": ca, "certfile": crt, "keyfile": key}


def broker_or_skip(folder: Path, tls: Optional[dict] = None) -> Mosquitto:
    import pytest

    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        pytest.skip("paho-mqtt is not installed (pip install 'edgeano[line]')")
    b = Mosquitto(folder, tls=tls)
    if b.exe is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    try:
        b.start()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"mosquitto would not start: {e}")
    return b
