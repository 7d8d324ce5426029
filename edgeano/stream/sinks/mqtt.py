"""--mqtt mqtt://[user:pass@]HOST[:1883]/TOPIC[?qos=1&only=ng&queue=10000]: events to an MQTT broker.

Publishes each frame's event (docs/events.md; all frames, or NG only with only=ng) on TOPIC, and a
retained status document (last verdict, counters, fps, source state, this sink's own state) on
TOPIC/status about once a second, with "state": "offline" as the last will. `mqtts://` (port
8883) connects with TLS, checking the broker's certificate against the system's CAs
(?ca=/path/ca.pem for another CA).

paho-mqtt's network thread does all socket work, so a write never blocks the loop. While the broker
is away, QoS 1/2 events wait in paho's bounded queue (`queue`, default 10000); events that find it
full are dropped and counted; the client reconnects with backoff (0.5 s doubling to 30 s) and sends
what waited. QoS 0 events published while disconnected are dropped and counted.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.stream.events import dumps, event_record, strict
from edgeano.stream.sinks.base import Sink

DEFAULT_QUEUE = 10000
STATUS_EVERY_S = 1.0


@dataclass
class MqttTarget:
    host: str
    port: int
    topic: str
    qos: int = 1
    only_ng: bool = False
    tls: bool = False
    user: Optional[str] = None
    password: Optional[str] = None
    queue: int = DEFAULT_QUEUE
    ca: Optional[str] = None

    @property
    def status_topic(self) -> str:
        return f"{self.topic}/status"

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{who}{self.host}:{self.port}/{self.topic}"


def parse_mqtt_url(url: str) -> MqttTarget:
    bad = f"--mqtt {url!r}: expected mqtt://[user:pass@]HOST[:1883]/TOPIC[?qos=1&only=ng] (or mqtts://)"
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise EdgeanoError(bad, EXIT_USAGE)
    topic = unquote(u.path.lstrip("/"))
    if not topic or any(c in topic for c in "#+") or topic.endswith("/"):
        raise EdgeanoError(f"--mqtt {url!r}: give a topic without wildcards, e.g. mqtt://broker/factory/line1", EXIT_USAGE)
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError:
        raise EdgeanoError(bad, EXIT_USAGE)
    q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
    unknown = sorted(set(q) - {"qos", "only", "queue", "ca"})
    if unknown:
        raise EdgeanoError(f"--mqtt: unknown option {unknown[0]!r} (use qos=0|1|2, only=ng|all, queue=N, ca=FILE)", EXIT_USAGE)
    if q.get("qos", "1") not in ("0", "1", "2"):
        raise EdgeanoError(f"--mqtt: qos must be 0, 1 or 2, got {q['qos']!r}", EXIT_USAGE)
    if q.get("only", "all") not in ("ng", "all"):
        raise EdgeanoError(f"--mqtt: only must be ng or all, got {q['only']!r}", EXIT_USAGE)
    if not q.get("queue", "1").isdigit() or int(q.get("queue", "1")) < 1:
        raise EdgeanoError(f"--mqtt: queue must be a positive number of events, got {q['queue']!r}", EXIT_USAGE)
    return MqttTarget(u.hostname, port, topic, int(q.get("qos", "1")), q.get("only") == "ng", u.scheme == "mqtts",
                      unquote(u.username) if u.username else None, unquote(u.password) if u.password else None,
                      int(q.get("queue", DEFAULT_QUEUE)), q.get("ca"))


def check_paho() -> None:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise EdgeanoError("--mqtt needs paho-mqtt: pip install 'edgeano[line]'", EXIT_USAGE)


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, target: MqttTarget, run_id: str = "", log=print, client_id: Optional[str] = None):
        check_paho()
        self.t = target
        self.run_id = run_id
        self.log = log
        self.client_id = client_id or f"edgeano-{run_id or 'run'}-{uuid.uuid4().hex[:6]}"
        self.client = None
        self.connected = False
        self.ever_connected = False
        self.sent = 0  # handed to paho (delivered or waiting in its queue)
        self.acked = 0  # on_publish calls: confirmed by the broker (QoS 1/2) or written (QoS 0), status messages included
        self.dropped = 0  # queue full, or QoS 0 while disconnected
        self.disconnects = 0
        self.last_error = ""
        self.next_status = 0.0
        self.ctx = None
        self.closed = False
        self.connect_failed_logged = False
        self.status_infos = []  # status messages not yet written; on_publish counts them too
        self.status_done = 0
        self._lock = threading.Lock()

    # -- paho callbacks (its network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.last_error = str(reason_code)
            return
        if not self.ever_connected:
            self.log(f"mqtt: connected to {self.t.describe()}")
        elif not self.connected:
            self.log(f"mqtt: reconnected to {self.t.describe()}")
        self.connected = self.ever_connected = True
        self.next_status = 0.0

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected and not self.closed:
            self.disconnects += 1
            self.log(f"mqtt: lost {self.t.describe()} ({reason_code}); events wait in the queue, reconnecting")
        self.connected = False

    def _on_connect_fail(self, client, userdata):
        if not self.connect_failed_logged:
            self.connect_failed_logged = True
            self.log(f"mqtt: cannot connect to {self.t.describe()} (refused, unreachable or TLS check failed); "
                     "events wait in the queue, retrying with backoff")

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        with self._lock:
            self.acked += 1

    # -- the sink -------------------------------------------------------------------------------
    def start(self, ctx) -> None:
        import paho.mqtt.client as mqtt

        self.ctx = ctx
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.t.user:
            c.username_pw_set(self.t.user, self.t.password)
        if self.t.tls:
            c.tls_set(ca_certs=self.t.ca, cert_reqs=ssl.CERT_REQUIRED)
        c.max_queued_messages_set(self.t.queue)
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(0.5, 30)
        c.will_set(self.t.status_topic, json.dumps({"run": self.run_id, "state": "offline"}), qos=1, retain=True)
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        c.on_connect_fail = self._on_connect_fail
        c.connect_async(self.t.host, self.t.port, keepalive=20)
        c.loop_start()  # paho's thread connects, reconnects with backoff, and does every socket write
        self.client = c

    def write(self, s, annotated) -> bool:
        if self.client is None:
            return False
        if not (self.t.only_ng and not s.anomaly):
            self._publish(self.t.topic, dumps(event_record(s, self.run_id)), self.t.qos)
        now = time.monotonic()
        if now >= self.next_status and self.connected:
            self.next_status = now + STATUS_EVERY_S
            self._status("running")
        return False

    def _publish(self, topic: str, payload: str, qos: int) -> None:
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=qos)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (qos == 0 and info.rc == mqtt.MQTT_ERR_NO_CONN):
            self.dropped += 1
        else:
            self.sent += 1

    def _status(self, state: str) -> None:
        doc = dict(self.ctx.status()) if self.ctx else {}
        doc.update(state=state, time=round(time.time(), 3))
        info = self.client.publish(self.t.status_topic, dumps(strict(doc)), qos=0, retain=True)
        self.status_infos.append(info)

    @property
    def delivered(self) -> int:
        """Events delivered: on_publish calls less those that were status messages."""
        left = []
        for info in self.status_infos:
            try:
                if info.is_published():
                    self.status_done += 1
                else:
                    left.append(info)
            except (RuntimeError, ValueError):
                pass  # lost with the connection (QoS 0): never written, so on_publish never counted it
        self.status_infos = left
        with self._lock:
            return max(0, self.acked - self.status_done)

    @property
    def pending(self) -> int:
        return max(0, self.sent - self.delivered) if self.t.qos else 0

    def state(self) -> str:
        if self.closed:
            conn = "closed"
        else:
            conn = "connected" if self.connected else ("reconnecting" if self.ever_connected else "connecting")
        return f"{conn}, delivered {self.delivered}, queued {self.pending}, dropped {self.dropped}"

    def close(self, flush_s: float = 5.0) -> None:
        if self.client is None:
            return
        if self.connected:
            self._status("stopped")
        deadline = time.monotonic() + flush_s
        while self.connected and self.pending and time.monotonic() < deadline:
            time.sleep(0.02)  # let queued events reach the broker before we hang up
        if self.pending:
            self.log(f"mqtt: {self.pending} events still queued at exit were not delivered")
        self.closed = True
        self.client.disconnect()
        self.client.loop_stop()
        self.client = None
