"""Triton client runner: score through a shared Triton Inference Server (`edgeano serve`, or a stock
Triton serving the repository `edgeano export --format triton` writes).

The client needs no artifact: the served model's config carries edgeano's metadata under
`parameters["edgeano"]` (the same JSON document as the ONNX metadata), so preprocessing and the
threshold come from the server. The config's input type says what travels:

- TYPE_UINT8 (`edgeano serve`, the default): the resized frame as 8-bit pixels, a quarter of the
  float tensor (150 KB instead of 600 KB for a 224 px RGB frame). The frame is still preprocessed
  by the one `Preprocess` (resize, colour order, x scale); `infer` turns that float tensor back into
  the exact integers it came from, and the server multiplies by the same scale, so the graph sees
  bit-identical input.
- TYPE_FP32: the float tensor itself (a stock Triton serving the exported ONNX).

Targets are model URLs, as Triton names them: `http://host:8000/v2/models/NAME`,
`grpc://host:8001/v2/models/NAME` (`model_url` builds one from `--server` and `--model`).
"""

from __future__ import annotations

import json
import threading
from typing import Dict, List, Tuple
from urllib.parse import urlparse

import numpy as np

from edgeano.artifact import METADATA_KEY, check_io, validate
from edgeano.errors import EXIT_ERROR, EXIT_USAGE, EdgeanoError

SCHEMES = {"http": 8000, "https": 8000, "grpc": 8001}
WIRE_TYPES = {"TYPE_UINT8": ("UINT8", np.uint8), "TYPE_FP32": ("FP32", np.float32)}


def is_model_url(target) -> bool:
    return isinstance(target, str) and urlparse(target).scheme in SCHEMES and "/v2/models/" in target


def model_url(server: str, name: str) -> str:
    """`--server` (http://host:8000, grpc://host:8001, https://..., or host:port for HTTP) and `--model`
    NAME -> the model's URL. Bad input -> one line naming the flag."""
    text = server if "://" in server else f"http://{server}"
    u = urlparse(text)
    if u.scheme not in SCHEMES or not u.hostname:
        raise EdgeanoError(f"--server {server!r}: expected http://HOST:PORT or grpc://HOST:PORT (e.g. http://localhost:8000)", EXIT_USAGE)
    if u.path not in ("", "/"):
        raise EdgeanoError(f"--server {server!r}: give the server only (no path); the model goes in --model", EXIT_USAGE)
    if not name or "/" in name:
        raise EdgeanoError(f"--model {name!r}: with --server, --model is the served model's name (e.g. gaussian)", EXIT_USAGE)
    try:
        port = u.port or SCHEMES[u.scheme]
    except ValueError:
        raise EdgeanoError(f"--server {server!r}: the port is not a number in 1..65535", EXIT_USAGE)
    return f"{u.scheme}://{u.hostname}:{port}/v2/models/{name}"


def _split(target: str) -> Tuple[str, str, str]:
    u = urlparse(target)
    return u.scheme, f"{u.hostname}:{u.port}", u.path.split("/v2/models/", 1)[1].strip("/")


def _client(scheme: str, address: str, timeout_s: float):
    try:
        if scheme == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
    except ImportError as e:
        raise EdgeanoError(f"scoring through a Triton server needs tritonclient ({e.name} missing): pip install 'edgeano[triton]'")
    if scheme == "grpc":
        return tc, tc.InferenceServerClient(address)
    return tc, tc.InferenceServerClient(address, ssl=scheme == "https", connection_timeout=timeout_s, network_timeout=timeout_s)


def served_config(client, scheme: str, name: str) -> Dict:
    cfg = client.get_model_config(name, as_json=True) if scheme == "grpc" else client.get_model_config(name)
    return cfg.get("config", cfg)


def metadata_of(cfg: Dict, source: str) -> Dict:
    """edgeano's metadata from a Triton model config's `parameters`."""
    raw = cfg.get("parameters", {}).get(METADATA_KEY, {}).get("string_value")
    if not raw:
        raise EdgeanoError(f"{source}: the served model has no '{METADATA_KEY}' parameter in its config; serve it with "
                           "`edgeano serve` or export its repository with `edgeano export --format triton`", EXIT_USAGE)
    try:
        return validate(json.loads(raw), source)
    except json.JSONDecodeError as e:
        raise EdgeanoError(f"{source}: the '{METADATA_KEY}' parameter is not valid JSON ({e})", EXIT_USAGE)


class TritonRunner:
    """`infer(x) -> {name: array}` through a Triton server; `x` is the float NCHW batch from Preprocess."""

    def __init__(self, target: str, timeout_s: float = 30.0):
        self.target = target
        self.scheme, self.address, self.model = _split(target)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.tc, self.client = _client(self.scheme, self.address, timeout_s)
        self._local.client = self.client
        self._others: List = []
        address = self.address
        try:
            live = self.client.is_server_live()
        except Exception as e:  # connection refused, DNS, TLS: tritonclient raises several types
            raise EdgeanoError(f"{target}: no Triton server answers at {address} ({str(e).splitlines()[0][:200]})", EXIT_ERROR)
        if not live:
            raise EdgeanoError(f"{target}: the Triton server at {address} is not live", EXIT_ERROR)
        try:
            ready = self.client.is_model_ready(self.model)
        except Exception as e:
            raise EdgeanoError(f"{target}: cannot ask the server about model {self.model!r} ({str(e).splitlines()[0][:200]})", EXIT_ERROR)
        if not ready:
            raise EdgeanoError(f"{target}: the server has no ready model {self.model!r}", EXIT_USAGE)
        cfg = served_config(self.client, self.scheme, self.model)
        self.meta = metadata_of(cfg, target)
        self._read_io(cfg)
        self.name = f"triton-{self.scheme}({self.meta.get('precision', 'fp32')}, {self.wire_type.lower()})"

    def _read_io(self, cfg: Dict) -> None:
        inputs, outputs = cfg.get("input", []), cfg.get("output", [])
        self.max_batch = int(cfg.get("max_batch_size", 0) or 0)
        lead = [-1] if self.max_batch else []
        shapes = [(i["name"], lead + [int(d) for d in i.get("dims", [])]) for i in inputs]
        self.output_names: List[str] = [o["name"] for o in outputs]
        check_io(self.meta, shapes, self.output_names, self.target)
        inp = inputs[0]
        if inp.get("data_type") not in WIRE_TYPES:
            raise EdgeanoError(f"{self.target}: input {inp['name']!r} is {inp.get('data_type')}; edgeano sends "
                               f"{' or '.join(WIRE_TYPES)}", EXIT_USAGE)
        self.input_name = inp["name"]
        self.wire_type, self.wire_dtype = WIRE_TYPES[inp["data_type"]]
        self.scale = np.float32(self.meta["input"].get("scale", 1.0 / 255.0))

    def pack(self, x: np.ndarray) -> np.ndarray:
        """The float batch -> what travels. uint8: the integers Preprocess scaled, checked to be exact."""
        if self.wire_dtype == np.float32:
            return np.ascontiguousarray(x, dtype=np.float32)
        q = np.rint(x / self.scale)
        if q.size and q.min() < 0 or q.max() > 255 or not np.array_equal(q.astype(np.float32) * self.scale, x):
            raise EdgeanoError(f"{self.target}: this model takes 8-bit frames and the input is not 8-bit pixels x {float(self.scale):g} "
                               "(serve it with `edgeano serve --input-dtype float32` to send floats)")
        return q.astype(np.uint8)

    def _thread_client(self):
        """tritonclient's HTTP client runs on gevent and must stay in the thread that made it: one per
        thread (a camera loop scoring from a worker thread). The gRPC client is thread-safe."""
        if self.scheme == "grpc":
            return self.client
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _client(self.scheme, self.address, self.timeout_s)[1]
            self._others.append(client)
        return client

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        data = self.pack(x)
        inp = self.tc.InferInput(self.input_name, list(data.shape), self.wire_type)
        if self.scheme == "grpc":
            inp.set_data_from_numpy(data)
            outs = [self.tc.InferRequestedOutput(n) for n in self.output_names]
        else:
            inp.set_data_from_numpy(data, binary_data=True)
            outs = [self.tc.InferRequestedOutput(n, binary_data=True) for n in self.output_names]
        try:
            res = self._thread_client().infer(self.model, [inp], outputs=outs)
        except Exception as e:  # InferenceServerException, or a dropped connection
            raise EdgeanoError(f"{self.target}: inference failed ({str(e).splitlines()[0][:300]})", EXIT_ERROR)
        return {n: res.as_numpy(n) for n in self.output_names}

    def statistics(self) -> Dict:
        """The server's inference statistics for this model (counts, batch sizes, queue and compute times)."""
        if self.scheme == "grpc":
            return self.client.get_inference_statistics(self.model, as_json=True)
        return self._thread_client().get_inference_statistics(self.model)

    def close(self) -> None:
        for client in [self.client] + self._others:
            try:
                if client is not None:
                    client.close()
            except Exception:  # noqa: BLE001 - a gevent client closed from another thread; its sockets go with it
                pass
        self.client, self._others = None, []
