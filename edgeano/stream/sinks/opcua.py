"""--opcua opc.tcp://[user:pass@]HOST[:4840]: an OPC UA server that PLCs and SCADA read (asyncua).

Namespace `urn:edgeano` (its index is what the server's NamespaceArray says, usually 2); object
`Inspection` with string node ids `Inspection.<Name>` (docs/events.md lists them):

    Verdict (String "OK"/"NG")   Score (Double)      Threshold (Double)    FrameIndex (Int64)
    Source (String)              Fps (Double)        OkCount (Int64)       NgCount (Int64)
    LastNgTime (DateTime)        SourceState (String: ok / reconnecting / lost / ended ...)

With several sources there is also an object `Source<K>` per source (ids `Source<K>.Verdict`,
`.Score`, `.FrameIndex`, `.OkCount`, `.NgCount`, `.State`). Updated per frame: the loop only
records the newest frame and wakes the server's own asyncio thread, which writes the variables
(several frames arriving faster than that are coalesced into one update). With user:pass in
the URL, anonymous sessions are refused and only that user gets in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

from edgeano.errors import EXIT_USAGE, EdgeanoError
from edgeano.stream.sinks.base import Sink

NAMESPACE = "urn:edgeano"
START_TIMEOUT_S = 30.0
MAIN_VARS = (("Verdict", "String"), ("Score", "Double"), ("Threshold", "Double"), ("FrameIndex", "Int64"),
             ("Source", "String"), ("Fps", "Double"), ("OkCount", "Int64"), ("NgCount", "Int64"),
             ("LastNgTime", "DateTime"), ("SourceState", "String"))
# OPC UA's null DateTime (0 ticks, 1601-01-01 UTC) before the first NG: a Python None cannot be
# encoded, and asyncua answered every read of the node with BadInternalError until an NG came.
NULL_TIME = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)
SOURCE_VARS = (("Verdict", "String"), ("Score", "Double"), ("FrameIndex", "Int64"), ("OkCount", "Int64"),
               ("NgCount", "Int64"), ("State", "String"))


@dataclass
class OpcUaTarget:
    host: str
    port: int
    user: Optional[str] = None
    password: Optional[str] = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/edgeano/"


def parse_opcua_url(url: str) -> OpcUaTarget:
    u = urlsplit(url)
    bad = f"--opcua {url!r}: expected opc.tcp://[user:pass@]HOST[:4840]"
    if u.scheme != "opc.tcp" or not u.hostname:
        raise EdgeanoError(bad, EXIT_USAGE)
    try:
        port = u.port if u.port is not None else 4840
    except ValueError:
        raise EdgeanoError(bad, EXIT_USAGE)
    if (u.username is None) != (u.password is None):
        raise EdgeanoError(f"--opcua {url!r}: give both user and password (opc.tcp://user:pass@host:4840) or neither", EXIT_USAGE)
    return OpcUaTarget(u.hostname, port, unquote(u.username) if u.username else None, unquote(u.password) if u.password else None)


def check_asyncua() -> None:
    try:
        import asyncua  # noqa: F401
    except ImportError:
        raise EdgeanoError("--opcua needs asyncua: pip install 'edgeano[line]'", EXIT_USAGE)


class OpcUaSink(Sink):
    name = "opcua"

    def __init__(self, target: OpcUaTarget, log=print):
        check_asyncua()
        self.t = target
        self.log = log
        self.ctx = None
        self.last = None  # (Scored) the newest frame
        self.per_source = {}  # source index -> newest Scored
        self.updates = 0
        self.aio: Optional[asyncio.AbstractEventLoop] = None
        self.wake: Optional[asyncio.Event] = None
        self.pending = False
        self.started = threading.Event()
        self.error: Optional[BaseException] = None
        self.port = target.port
        self.thread = threading.Thread(target=self._thread, name="edgeano-opcua", daemon=True)

    def start(self, ctx) -> None:
        self.ctx = ctx
        # asyncua logs (with tracebacks) what this sink reports itself in one line or in its state
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        self.thread.start()
        if not self.started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"OPC UA server on {self.t.endpoint} did not start in {START_TIMEOUT_S:.0f} s")
        if self.error is not None:
            raise EdgeanoError(f"--opcua {self.t.endpoint}: the server did not start ({self.error})", EXIT_USAGE)
        self.log(f"opcua: serving {self.t.endpoint} (namespace {NAMESPACE}, object Inspection)")

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported through start() / state()
            self.error = e
            self.started.set()

    def _user_manager(self):
        from asyncua.crypto.permission_rules import User, UserRole
        from asyncua.server.user_managers import UserManager

        want = (self.t.user, self.t.password)

        class OneUser(UserManager):
            def get_user(self, iserver, username=None, password=None, certificate=None):
                return User(role=UserRole.User, name=username) if (username, password) == want else None

        return OneUser()

    async def _main(self) -> None:
        from asyncua import Server, ua

        server = Server(user_manager=self._user_manager() if self.t.user else None)
        await server.init()
        server.set_endpoint(self.t.endpoint)
        server.set_server_name("edgeano")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.t.user:
            server.set_security_IDs(["Username"])
        idx = await server.register_namespace(NAMESPACE)
        self.vars = await self._make_vars(server, idx, ua)
        self.aio, self.wake = asyncio.get_running_loop(), asyncio.Event()
        self.stop_req = asyncio.Event()
        async with server:
            self.port = self.t.port
            self.started.set()
            while not self.stop_req.is_set():
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                self.pending = False
                await self._update(ua)

    async def _make_vars(self, server, idx, ua):
        out = {}

        async def add(obj, prefix, name, vtype):
            initial = {"String": "", "Double": 0.0, "Int64": 0, "DateTime": NULL_TIME}[vtype]
            var = await obj.add_variable(ua.NodeId(f"{prefix}.{name}", idx), ua.QualifiedName(name, idx),
                                         ua.Variant(initial, getattr(ua.VariantType, vtype)))
            out[f"{prefix}.{name}"] = (var, getattr(ua.VariantType, vtype))

        main = await server.nodes.objects.add_object(ua.NodeId("Inspection", idx), ua.QualifiedName("Inspection", idx))
        for name, vtype in MAIN_VARS:
            await add(main, "Inspection", name, vtype)
        names = self.ctx.sources if self.ctx else []
        if len(names) > 1:
            for k in range(len(names)):
                obj = await server.nodes.objects.add_object(ua.NodeId(f"Source{k}", idx), ua.QualifiedName(f"Source{k}", idx))
                for name, vtype in SOURCE_VARS:
                    await add(obj, f"Source{k}", name, vtype)
        return out

    async def _set(self, ua, key: str, value) -> None:
        var, vtype = self.vars[key]
        await var.write_value(ua.DataValue(ua.Variant(value, vtype)))

    async def _update(self, ua) -> None:
        s = self.last
        if s is None or self.ctx is None:
            return
        st = self.ctx.status()
        src = st["sources"][s.source_index]
        last_ng = st.get("last_ng_time")
        values = {"Verdict": "NG" if s.anomaly else "OK", "Score": float(s.score), "Threshold": float(s.threshold),
                  "FrameIndex": int(s.index), "Source": s.source, "Fps": float(st["fps"]), "OkCount": int(st["ok"]),
                  "NgCount": int(st["ng"]), "SourceState": src["state"],
                  "LastNgTime": dt.datetime.fromtimestamp(last_ng, dt.timezone.utc) if last_ng else NULL_TIME}
        for name, v in values.items():
            await self._set(ua, f"Inspection.{name}", v)
        if len(st["sources"]) > 1:
            for k, ss in self.per_source.items():
                info = st["sources"][k]
                for name, v in (("Verdict", "NG" if ss.anomaly else "OK"), ("Score", float(ss.score)), ("FrameIndex", int(ss.index)),
                                ("OkCount", info["frames"] - info["anomalies"]), ("NgCount", info["anomalies"]), ("State", info["state"])):
                    await self._set(ua, f"Source{k}.{name}", v)
        self.updates += 1

    def _poke(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def write(self, s, annotated) -> bool:
        self.last = s
        self.per_source[s.source_index] = s
        if self.aio is not None and not self.pending:
            self.pending = True
            self.aio.call_soon_threadsafe(self._poke)
        return False

    def state(self) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        return f"serving, {self.updates} updates" if self.started.is_set() else "starting"

    def close(self) -> None:
        if self.aio is not None and self.thread.is_alive():
            try:
                self.aio.call_soon_threadsafe(self.stop_req.set)
                self.aio.call_soon_threadsafe(self._poke)
            except RuntimeError:
                pass  # its loop already ended
            self.thread.join(timeout=5.0)
