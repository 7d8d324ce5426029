"""--http: the live page in a real headless Chromium (Debian's, driven by Playwright), and its JSON API."""

from __future__ import annotations

import json
import os
import re
import signal
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from linehelpers import edgeano_run, free_port, read_events, texture_frames, write_folder

from edgeano.runtime.engine import Engine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what lets Chromium start as root on a closed network (no sandbox, no GPU, no calls home)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def frames(texture_data):
    return texture_frames(texture_data)


def get(url: str, timeout: float = 5.0, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_up(url: str, proc, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            get(url, timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def stop(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return err


def test_page_in_headless_chromium_streams_and_shows_ng_frames(frames, gaussian_onnx, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'edgeano[line]')")
    folder = write_folder(frames, tmp_path / "frames")
    with Engine.load(gaussian_onnx) as eng:
        thr = float(np.median(eng.score(frames).scores))  # about half the frames NG
    port = free_port()
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 8, "--max-frames", 400,
                     "--threshold", thr, "--events", tmp_path / "ev.jsonl", "--http", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("EDGEANO_SCREENSHOTS", tmp_path))
    try:
        wait_up(base + "/api/status", p)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 700})
                page.goto(base + "/")
                page.wait_for_function("document.getElementById('stream0') && document.getElementById('stream0').naturalWidth > 0",
                                       timeout=30000)
                img = page.locator("#stream0")
                first = img.screenshot()
                time.sleep(1.5)  # a dozen frames later
                second = img.screenshot()
                assert first != second  # the stream image changes
                page.wait_for_selector("#gallery .ng img", timeout=30000)
                page.wait_for_function("[...document.querySelectorAll('#gallery .ng img')].some(i => i.naturalWidth > 0)",
                                       timeout=30000)
                time.sleep(1.0)
                page.screenshot(path=str(shots / "live-page.png"), full_page=True)
                verdict = page.inner_text("#verdict")
                frames_shown = int(page.inner_text("#frames"))
                caption = page.inner_text("#gallery .ng div")
            finally:
                browser.close()
        assert verdict in ("OK", "NG") and frames_shown > 0
        assert re.search(r"#\d+ · score", caption)
        _, body = get(base + "/api/events?since=0")
        api = json.loads(body)
        seqs = [e["seq"] for e in api["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and api["next"] == seqs[-1] + 1
        _, body = get(base + f"/api/events?since={api['next'] - 3}")
        assert [e["seq"] for e in json.loads(body)["events"]][:3] == seqs[-3:]
        status = json.loads(get(base + "/api/status")[1])
        assert status["sinks"]["http"]["state"].endswith("viewers") and status["ng"] > 0 and status["frames"] >= frames_shown
    finally:
        err = stop(p)
    assert p.returncode == 0, err
    events = read_events(tmp_path / "ev.jsonl")
    by_seq = {e["seq"]: e for e in events}
    assert all(by_seq[e["seq"]] == e for e in api["events"])  # the API serves the --events records
    assert "http: live page at http://127.0.0.1:" in err and "sink http:" in err


def first_frame(url, wait_s=60.0):
    """GET url until the loop has scored a frame (the page is up before the first frame: 404)."""
    deadline = time.time() + wait_s
    while True:
        try:
            return get(url)
        except urllib.error.HTTPError as e:
            if e.code != 404 or time.time() > deadline:
                raise
            time.sleep(0.2)


def test_http_beyond_localhost_needs_the_token(frames, gaussian_onnx, tmp_path):
    folder = write_folder(frames, tmp_path / "frames")
    port = free_port()
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--loop", "--fps", 10, "--max-frames", 300,
                     "--http", f"0.0.0.0:{port}"])
    try:
        deadline = time.time() + 60
        line = ""
        while time.time() < deadline and "http: live page" not in line:
            line = p.stderr.readline()
            assert line or p.poll() is None
        token = re.search(r"token=([\w-]+)", line).group(1)
        base = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + "/api/status")
        assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            get(base + "/api/status?token=wrong")
        assert get(base + f"/api/status?token={token}")[0] == 200
        assert get(base + "/api/status", headers={"Authorization": f"Bearer {token}"})[0] == 200
        code, jpg = first_frame(base + f"/frame.jpg?token={token}")  # 404 until the first frame is scored
        assert code == 200 and jpg[:2] == b"\xff\xd8"
    finally:
        err = stop(p)
    assert p.returncode == 0, err


def test_http_bind_defaults_to_localhost():
    from edgeano.stream.sinks.http import is_loopback, parse_http_bind

    assert parse_http_bind("8080") == ("127.0.0.1", 8080) and parse_http_bind(":9000") == ("127.0.0.1", 9000)
    assert parse_http_bind("0.0.0.0:80") == ("0.0.0.0", 80) and parse_http_bind("[::1]:8080") == ("::1", 8080)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
