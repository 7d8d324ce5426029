"""--opcua: an asyncua client on loopback reads the inspection variables while a file source plays."""

from __future__ import annotations

import asyncio
import signal
import time

import numpy as np
import pytest
from linehelpers import edgeano_run, free_port, read_events, texture_frames, write_folder

from edgeano.runtime.engine import Engine

asyncua = pytest.importorskip("asyncua", reason="asyncua is not installed (pip install 'edgeano[line]')")


@pytest.fixture(scope="module")
def frames(texture_data):
    return texture_frames(texture_data)


async def read_vars(url: str, names, user=None, password=None, timeout: float = 60.0):
    """Connect (retrying while the server starts) and read each node id (Inspection.<name> when no dot)."""
    from asyncua import Client, ua

    deadline = time.time() + timeout
    while True:
        client = Client(url, timeout=5)
        if user:
            client.set_user(user)
            client.set_password(password)
        try:
            await client.connect()
            break
        except (OSError, asyncio.TimeoutError, ConnectionError):
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        idx = await client.get_namespace_index("urn:edgeano")
        out = {}
        for n in names:
            out[n] = await client.get_node(ua.NodeId(n if "." in n else f"Inspection.{n}", idx)).read_value()
        return out
    finally:
        await client.disconnect()


def finish(p) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.communicate(timeout=30)[1]
    finally:
        if p.poll() is None:
            p.kill()


NAMES = ["Verdict", "Score", "Threshold", "FrameIndex", "Source", "Fps", "OkCount", "NgCount", "LastNgTime", "SourceState"]


PER_SOURCE = [f"Source{k}.{n}" for k in (0, 1) for n in ("Verdict", "FrameIndex", "OkCount", "NgCount", "State")]


def test_plc_reads_the_verdict_while_a_file_plays(frames, gaussian_onnx, tmp_path):
    folder = write_folder(frames, tmp_path / "frames")
    second_cam = write_folder(frames[::-1], tmp_path / "frames2")
    with Engine.load(gaussian_onnx) as eng:
        thr = float(np.median(eng.score(frames).scores))
    port = free_port()
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--source", second_cam, "--headless", "--loop", "--fps", 10,
                     "--max-frames", 800, "--threshold", thr, "--events", tmp_path / "ev.jsonl", "--opcua", f"opc.tcp://127.0.0.1:{port}"])
    url = f"opc.tcp://127.0.0.1:{port}/edgeano/"
    try:
        first = asyncio.run(read_vars(url, NAMES + PER_SOURCE))
        time.sleep(1.5)
        second = asyncio.run(read_vars(url, NAMES + PER_SOURCE))
    finally:
        err = finish(p)
    assert p.returncode == 0, err
    assert second["FrameIndex"] > first["FrameIndex"]  # updated per frame while the file plays
    assert second["OkCount"] + second["NgCount"] > first["OkCount"] + first["NgCount"]
    assert second["Verdict"] in ("OK", "NG") and second["SourceState"] == "ok" and second["Source"] in (str(folder), str(second_cam))
    assert second["Threshold"] == pytest.approx(thr, rel=1e-6) and second["Fps"] > 0
    assert second["NgCount"] > 0 and second["LastNgTime"] is not None
    events = {(e["source"], e["frame"]): e for e in read_events(tmp_path / "ev.jsonl")}
    assert (second["Source"], second["FrameIndex"]) in events  # a frame the loop really scored
    for k in (0, 1):  # each source has its own object too
        assert second[f"Source{k}.FrameIndex"] > first[f"Source{k}.FrameIndex"] and second[f"Source{k}.State"] == "ok"
        assert second[f"Source{k}.Verdict"] in ("OK", "NG") and second[f"Source{k}.NgCount"] > 0
    assert "opcua: serving" in err and "sink opcua: serving" in err


def test_last_ng_time_reads_as_null_before_the_first_ng(frames, gaussian_onnx, tmp_path):
    """A PLC polls from the start: before any NG, LastNgTime is OPC UA's null DateTime, not an error."""
    folder = write_folder(frames, tmp_path / "frames")
    port = free_port()
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 10, "--max-frames", 400,
                     "--threshold", 1e30, "--opcua", f"opc.tcp://127.0.0.1:{port}"])
    try:
        got = asyncio.run(read_vars(f"opc.tcp://127.0.0.1:{port}/edgeano/", ["LastNgTime", "NgCount", "FrameIndex"]))
        time.sleep(1.0)
        later = asyncio.run(read_vars(f"opc.tcp://127.0.0.1:{port}/edgeano/", ["LastNgTime", "NgCount", "FrameIndex"]))
    finally:
        err = finish(p)
    assert p.returncode == 0, err
    assert later["FrameIndex"] > 0 and got["NgCount"] == later["NgCount"] == 0  # every frame OK at this threshold
    for seen in (got, later):
        assert seen["LastNgTime"] is None or seen["LastNgTime"].year == 1601, seen


def test_user_and_password_are_required_when_given(frames, gaussian_onnx, tmp_path):
    folder = write_folder(frames, tmp_path / "frames")
    port = free_port()
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 10, "--max-frames", 400,
                     "--opcua", f"opc.tcp://plc:s3cret@127.0.0.1:{port}"])
    url = f"opc.tcp://127.0.0.1:{port}/edgeano/"
    try:
        ok = asyncio.run(read_vars(url, ["Verdict", "FrameIndex"], user="plc", password="s3cret"))
        with pytest.raises(Exception) as anon:
            asyncio.run(read_vars(url, ["Verdict"], timeout=0))
        with pytest.raises(Exception):
            asyncio.run(read_vars(url, ["Verdict"], user="plc", password="wrong", timeout=0))
    finally:
        err = finish(p)
    assert p.returncode == 0, err
    assert ok["Verdict"] in ("OK", "NG")
    assert "Bad" in repr(anon.value) or "denied" in repr(anon.value).lower() or "Identity" in repr(anon.value)


def test_a_port_already_taken_is_one_line_and_exit_2(frames, gaussian_onnx, tmp_path):
    import socket

    folder = write_folder(frames, tmp_path / "frames")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--opcua", f"opc.tcp://127.0.0.1:{port}"])
        _, err = p.communicate(timeout=120)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and f"--opcua opc.tcp://127.0.0.1:{port}/edgeano/: the server did not start" in errors[0], err
    assert "Traceback" not in err
