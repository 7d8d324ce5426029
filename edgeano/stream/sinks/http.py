"""--http [HOST:]PORT: the live page, served by the loop itself (no web server to install).

    /                       the page (http_page.html): live stream per source, verdict, score, fps,
                            counters, the last NG frames with their heatmaps
    /stream.mjpg?source=K   the annotated stream of source K (MJPEG, multipart/x-mixed-replace)
    /frame.jpg?source=K     the newest annotated frame
    /api/status             counters, fps, sources, sinks (JSON)
    /api/events?since=N     the events (docs/events.md) with seq >= N still held (the last 1000)
    /api/ng                 the NG gallery: the last `gallery` NG frames, newest first
    /ng/ID.jpg, /ng/ID_heatmap.jpg

Bound to 127.0.0.1 unless a host is given. Bound anywhere else it needs a token (--http-token, or
one made up and printed at start): `?token=...` or `Authorization: Bearer ...` on every request.

The loop only hands over references (the scored frame, its event); drawing the overlay and JPEG
encoding happen in the server's threads, only while someone watches, at most `max_fps` per client.
A browser that goes away costs nothing; a server thread that fails is counted, never fatal.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import cv2

from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.stream.events import dumps, event_record, strict
from edgeano.stream.sinks.base import Sink

PAGE = Path(__file__).with_name("http_page.html")
EVENTS_KEPT = 1000
BOUNDARY = "edgeanoframe"


def parse_http_bind(text: str) -> Tuple[str, int]:
    """'8080', ':8080', '127.0.0.1:8080', '0.0.0.0:8080', '[::1]:8080' -> (host, port)."""
    t = text.strip()
    host, _, port = t.rpartition(":") if ":" in t else ("", "", t)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgeanoError(f"--http {text!r}: expected [HOST:]PORT, e.g. --http 127.0.0.1:8080", EXIT_USAGE)
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpSink(Sink):
    name = "http"

    def __init__(self, bind: str, token: Optional[str] = None, run_id: str = "", log=print, gallery: int = 12,
                 max_fps: float = 15.0):
        self.host, self.port = parse_http_bind(bind)
        if not is_loopback(self.host) and not token:
            token = secrets.token_urlsafe(12)
            self.made_token = True
        else:
            self.made_token = False
        self.token = token
        self.run_id = run_id
        self.log = log
        self.max_fps = max_fps
        self.latest: Dict[int, object] = {}  # source index -> newest Scored
        self.version = 0
        self.cond = threading.Condition()
        self.events: deque = deque(maxlen=EVENTS_KEPT)
        self.ng: deque = deque(maxlen=gallery)  # (id, Scored)
        self.jpeg_cache: Dict[str, bytes] = {}
        self.clients = 0
        self.requests = 0
        self.errors = 0
        self.ctx = None
        try:
            self.server = _Server((self.host, self.port), self._handler_class())
        except OSError as e:
            raise EdgeanoError(f"--http {bind}: cannot listen on {self.host}:{self.port} ({e.strerror or e})", EXIT_USAGE)
        self.port = self.server.server_address[1]  # port 0 = any free port (tests)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="edgeano-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, ctx) -> None:
        self.ctx = ctx
        self.thread.start()
        note = " (token made up for this run; pass --http-token to choose it)" if self.made_token else ""
        self.log(f"http: live page at {self.url}{note}")

    # -- the loop's side: references only ---------------------------------------------------------
    def write(self, s, annotated) -> bool:
        rec = event_record(s, self.run_id)
        with self.cond:
            self.latest[s.source_index] = s
            self.events.append(rec)
            if s.anomaly:
                self.ng.appendleft((f"{s.seq}", s, rec))
            self.version += 1
            self.cond.notify_all()
        return False

    def state(self) -> str:
        return f"{self.clients} viewers" + (f", {self.errors} errors" if self.errors else "")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.cond:
            self.cond.notify_all()

    # -- the server's side ----------------------------------------------------------------------
    def jpeg(self, s, heatmap: bool) -> bytes:
        img = self.ctx.render(s) if heatmap else s.frame
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def gallery_jpeg(self, key: str) -> Optional[bytes]:
        gid, _, kind = key.partition("_")
        with self.cond:
            item = next((it for it in self.ng if it[0] == gid), None)
        if item is None:
            return None
        if key not in self.jpeg_cache:
            if len(self.jpeg_cache) > 4 * (self.ng.maxlen or 12):
                self.jpeg_cache.clear()
            self.jpeg_cache[key] = self.jpeg(item[1], heatmap=(kind == "heatmap"))
        return self.jpeg_cache[key]

    def events_since(self, since: int, limit: int) -> dict:
        with self.cond:
            evs = [e for e in self.events if e["seq"] >= since][:limit]
            oldest = self.events[0]["seq"] if self.events else None
        nxt = evs[-1]["seq"] + 1 if evs else since
        return {"schema": 1, "events": evs, "next": nxt, "oldest_held": oldest}

    def ng_list(self) -> dict:
        with self.cond:
            items = list(self.ng)
        return {"ng": [dict(rec, id=gid, image=f"/ng/{gid}.jpg", heatmap=f"/ng/{gid}_heatmap.jpg") for gid, _, rec in items]}

    def authorized(self, handler, query) -> bool:
        if not self.token:
            return True
        given = (query.get("token") or [""])[-1]
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def stream(self, handler, source: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        self.clients += 1
        seen, gap = -1, 1.0 / self.max_fps
        try:
            while self.thread.is_alive():
                with self.cond:
                    if self.version == seen:
                        self.cond.wait(1.0)
                    s, seen = self.latest.get(source), self.version
                if s is None:
                    continue
                t0 = time.monotonic()
                data = self.jpeg(s, heatmap=True)
                handler.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode())
                handler.wfile.write(data + b"\r\n")
                handler.wfile.flush()
                rest = gap - (time.monotonic() - t0)
                if rest > 0:
                    time.sleep(rest)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer went away
        finally:
            self.clients -= 1

    def _handler_class(self):
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # no access log on the loop's stderr
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, obj) -> None:
                self._send(200, dumps(strict(obj)).encode(), "application/json")

            def do_GET(self):  # noqa: N802 - http.server's name
                sink.requests += 1
                u = urlsplit(self.path)
                q = parse_qs(u.query)
                try:
                    if not sink.authorized(self, q):
                        return self._send(401, b'{"error": "token required"}', "application/json")
                    source = int((q.get("source") or ["0"])[-1])
                    if u.path in ("/", "/index.html"):
                        return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
                    if u.path == "/api/status":
                        return self._json(dict(sink.ctx.status(), schema=1))
                    if u.path == "/api/events":
                        since = int((q.get("since") or ["0"])[-1])
                        limit = int((q.get("limit") or [str(EVENTS_KEPT)])[-1])
                        return self._json(sink.events_since(since, max(1, limit)))
                    if u.path == "/api/ng":
                        return self._json(sink.ng_list())
                    if u.path == "/stream.mjpg":
                        return sink.stream(self, source)
                    if u.path == "/frame.jpg":
                        s = sink.latest.get(source)
                        if s is None:
                            return self._send(404, b"no frame yet", "text/plain")
                        return self._send(200, sink.jpeg(s, heatmap=True), "image/jpeg")
                    if u.path.startswith("/ng/") and u.path.endswith(".jpg"):
                        data = sink.gallery_jpeg(u.path[4:-4])
                        if data is None:
                            return self._send(404, b"no longer held", "text/plain")
                        return self._send(200, data, "image/jpeg")
                    return self._send(404, b"not found", "text/plain")
                except ValueError:
                    return self._send(400, b"bad query", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception:  # noqa: BLE001 - a page request must never take the loop down
                    sink.errors += 1
                    try:
                        self._send(500, b"internal error", "text/plain")
                    except OSError:
                        pass

        return Handler
