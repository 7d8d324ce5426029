"""A model with an anomaly map and map units in its metadata (meta["map"]): the overlay colours in
those units, events carry the peak and the area above the map threshold, --save-anomalies writes
the mask. The model is a tiny hand-made ONNX (map = channel mean of the input, score = its max)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from linehelpers import edgeano_run, read_events

from edgeano.artifact import make_metadata, set_onnx_metadata
from edgeano.data.preprocess import Preprocess
from edgeano.stream.maps import MapScale, peak_and_area
from edgeano.stream.overlay import Overlay, colorize

SIZE = 32
MAP = {"unit": 0.3, "threshold": 0.6, "method": "test: p99.9 of normal pixels"}
FRAME_HW = (80, 96)
SQUARE = (48, 16, 16, 16)  # x, y, w, h of the bright defect


def tiny_map_onnx(path, with_map_meta: bool = True):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", SIZE, SIZE])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    nodes = [helper.make_node("ReduceMean", ["x"], ["anomaly_map"], axes=[1], keepdims=0),
             helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0)]
    model = helper.make_model(helper.make_graph(nodes, "tiny-map", [x], [score, amap]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    pre = Preprocess(size=(SIZE, SIZE), color="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    extra = {"map": MAP} if with_map_meta else {}
    meta = make_metadata("tiny-map", pre, ["score", "anomaly_map"], {"value": 0.5, "method": "fixed"},
                         {"p50": 0.2, "n": 1}, **extra)
    set_onnx_metadata(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def good_frame() -> np.ndarray:
    """Normal: a gentle gradient that stays below the map's unit (0.3 * 255 = 76)."""
    ramp = np.linspace(20, 60, FRAME_HW[1], dtype=np.float32)[None, :].repeat(FRAME_HW[0], 0)
    return np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)


def bad_frame() -> np.ndarray:
    f = good_frame()
    x, y, w, h = SQUARE
    f[y : y + h, x : x + w] = 255
    return f


@pytest.fixture(scope="module")
def map_model(tmp_path_factory):
    return tiny_map_onnx(tmp_path_factory.mktemp("mapmodel") / "tiny_map.onnx")


def test_overlay_uses_the_artifacts_units_so_a_good_frame_stays_cold():
    pre = Preprocess(size=(SIZE, SIZE), color="BGR", mean=(0, 0, 0), std=(1, 1, 1))
    scale = MapScale.from_meta({"map": MAP})
    normal = pre.batch([good_frame()])[0].mean(0)  # what the tiny model outputs as its map
    in_units, per_frame = colorize(normal, scale), colorize(normal)
    assert (in_units[..., 2] < 100).all() and (in_units[..., 0] > 100).all()  # blue to cyan everywhere: cold
    assert (per_frame[..., 2] > 100).any()  # per-frame min-max would paint the brightest normal pixels red
    defect = pre.batch([bad_frame()])[0].mean(0)
    hot = colorize(defect, scale)
    cy, cx = int((SQUARE[1] + 8) * SIZE / FRAME_HW[0]), int((SQUARE[0] + 8) * SIZE / FRAME_HW[1])
    assert hot[cy, cx, 2] > 200 and hot[cy, cx, 0] < 80  # above the map threshold: red
    out = Overlay(0.5, pre, 0.2, scale).render(good_frame(), 0.2, False, normal)
    assert (out[20:, :, 2].astype(int) <= out[20:, :, 0].astype(int) + 10).all()  # nothing reddish on the good frame


def test_peak_and_area_in_frame_pixels_with_a_roi():
    amap = np.zeros((SIZE, SIZE), np.float32)
    amap[8:16, 20:24] = 1.0  # 4 x 8 map cells
    peak, area = peak_and_area(amap, (10, 5, 64, 64), (80, 96, 3), MapScale(0.3, 0.6))
    assert (peak["x"], peak["y"]) == (10 + int(20.5 * 2), 5 + int(8.5 * 2)) and peak["value"] == 1.0
    assert area == 32 * 4  # 32 map cells of 2 x 2 frame pixels
    assert peak_and_area(amap, None, (80, 96, 3), None)[1] is None  # no map threshold: no area


def test_run_events_carry_peak_and_area_and_anomalies_get_a_mask(map_model, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), good_frame())
    cv2.imwrite(str(folder / "001.png"), bad_frame())
    p = edgeano_run(["--model", map_model, "--source", folder, "--headless", "--events", tmp_path / "ev.jsonl",
                     "--save-anomalies", tmp_path / "ng"])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    good, bad = read_events(tmp_path / "ev.jsonl")
    assert good["label"] == "OK" and good["area_px"] == 0
    assert bad["label"] == "NG" and bad["score"] == pytest.approx(1.0)
    x, y, w, h = SQUARE
    assert x <= bad["peak"]["x"] < x + w and y <= bad["peak"]["y"] < y + h and bad["peak"]["value"] == pytest.approx(1.0)
    assert 0.6 * w * h <= bad["area_px"] <= 1.4 * w * h
    saved = sorted(p.name for p in (tmp_path / "ng").iterdir())
    assert len(saved) == 3 and [s for s in saved if s.endswith("_mask.png")], saved
    mask = cv2.imread(str(tmp_path / "ng" / next(s for s in saved if s.endswith("_mask.png"))), cv2.IMREAD_UNCHANGED)
    assert mask.shape == FRAME_HW and mask[y + 8, x + 8] == 255 and mask[5, 5] == 0 and mask[y + 8, 10] == 0
    assert 0.6 * w * h <= np.count_nonzero(mask) <= 1.4 * w * h
    heat = cv2.imread(str(tmp_path / "ng" / next(s for s in saved if s.endswith("_heatmap.jpg"))))
    assert heat[y + 8, x + 8, 2] > heat[y + 8, x + 8, 0]  # the defect is red on the overlay


def test_without_map_metadata_the_overlay_falls_back_and_events_have_no_area(tmp_path):
    model = tiny_map_onnx(tmp_path / "nometa.onnx", with_map_meta=False)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "001.png"), bad_frame())
    p = edgeano_run(["--model", model, "--source", folder, "--headless", "--events", tmp_path / "ev.jsonl",
                     "--save-anomalies", tmp_path / "ng"])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    (ev,) = read_events(tmp_path / "ev.jsonl")
    assert "peak" in ev and "area_px" not in ev  # the peak needs only the map; the area needs its threshold
    assert not list((tmp_path / "ng").glob("*_mask.png")) and len(list((tmp_path / "ng").glob("*.jpg"))) == 2


def test_an_exported_gaussian_map_artifact_drives_run_events_masks_and_overlay(gaussian_onnx, texture_data, tmp_path):
    """The Gaussian model's own artifact (conftest: 64 px, map on by default) through `edgeano run`:
    events carry peak and area in the artifact's map units, normal frames stay below its map
    threshold, NG frames get a mask, and the loop's overlay colours in the artifact's units."""
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image
    from edgeano.runtime.engine import Engine
    from edgeano.stream.loop import LoopConfig, StreamLoop

    items = load_dataset(texture_data).test
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, t in enumerate(items):  # 64 px tiles, named so the events come back in this order
        cv2.imwrite(str(folder / f"{i:03d}.png"), read_image(t.path))
    p = edgeano_run(["--model", gaussian_onnx, "--source", folder, "--headless", "--events", tmp_path / "ev.jsonl",
                     "--save-anomalies", tmp_path / "ng"])
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err
    events = read_events(tmp_path / "ev.jsonl")
    assert len(events) == len(items) and all("peak" in e and "area_px" in e for e in events)
    good = [e for e, t in zip(events, items) if t.label == 0]
    bad = [e for e, t in zip(events, items) if t.label == 1]
    with Engine.load(gaussian_onnx) as engine:
        units = engine.meta["map"]
        loop = StreamLoop(engine, [], [], LoopConfig())
        assert loop.map_scale == MapScale(units["unit"], units["threshold"], units["method"])
        # a normal frame's map stays below the artifact's map threshold: no area, peak under it
        assert sum(e["area_px"] == 0 and e["peak"]["value"] < units["threshold"] for e in good) >= 0.8 * len(good)
        assert any(e["area_px"] > 0 for e in bad)
        assert np.mean([e["area_px"] for e in bad]) > 4 * max(1.0, np.mean([e["area_px"] for e in good]))
        ng = [e for e in events if e["label"] == "NG"]
        assert ng and len(list((tmp_path / "ng").glob("*_mask.png"))) == sum(e["area_px"] > 0 for e in ng)
        # the overlay: fixed units, so the coldest good frame shows no red; per-frame min-max would paint its peak red
        i = int(np.argmin([e["peak"]["value"] for e in good]))
        frame = read_image([t for t in items if t.label == 0][i].path)
        amap = engine.result(engine.infer(engine.preprocess.batch([frame]))).maps[0]
        redness = lambda c: (c[..., 2].astype(int) - c[..., 0]).max()  # noqa: E731
        assert redness(colorize(amap, loop.map_scale)) < 0 < redness(colorize(amap))
