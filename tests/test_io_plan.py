"""The runner's I/O plan without a GPU (edgeano.runtime.io_plan): batch splitting and padding for
every runner, and how a TensorRT engine's tensors (plain tuples here) become buffers and per-call
shapes. A fixed-batch-2 ONNX Runtime artifact scores 1 and 3 frames through Engine."""

from __future__ import annotations

import numpy as np
import pytest

from edgeano.errors import EdgeanoError
from edgeano.runtime.engine import Engine
from edgeano.runtime.io_plan import batch_calls, pad_batch, plan_io, profile_error
from edgeano.runtime.tiny_model import SIZE, tiny_onnx

IMG = (3, SIZE, SIZE)


@pytest.mark.parametrize("n, lo, hi, calls", [
    (1, 1, 0, [(0, 1, 1)]),                        # dynamic, any size: one call
    (5, 1, 0, [(0, 5, 5)]),
    (5, 1, 2, [(0, 2, 2), (2, 4, 2), (4, 5, 1)]),  # dynamic 1..2: split, last call short
    (1, 2, 2, [(0, 1, 2)]),                        # fixed batch 2: one frame padded to 2
    (3, 2, 2, [(0, 2, 2), (2, 3, 2)]),             # 3 frames: 2 + 1 padded
    (4, 4, 8, [(0, 4, 4)]),
    (0, 2, 2, []),
])
def test_batch_calls(n, lo, hi, calls):
    assert batch_calls(n, lo, hi) == calls


def test_pad_batch_repeats_the_last_real_row():
    x = np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
    p = pad_batch(x, 4)
    assert p.shape == (4, 3) and (p[2] == x[1]).all() and (p[3] == x[1]).all() and (p[:2] == x).all()
    assert pad_batch(x, 2) is x


ENGINE_TENSORS = [("input", "input", (-1, *IMG), "float32"),
                  ("score", "output", (-1,), "float32"),
                  ("anomaly_map", "output", (-1, SIZE, SIZE), "float16")]


def test_dynamic_engine_plan_buffers_and_call_shapes():
    plan = plan_io(ENGINE_TENSORS, ((1, *IMG), (1, *IMG), (8, *IMG)), "m.engine")
    assert plan.dynamic and (plan.min_batch, plan.opt_batch, plan.max_batch) == (1, 1, 8)
    assert plan.input.name == "input" and plan.output_names == ["score", "anomaly_map"]
    assert plan.buffer_elements("input") == 8 * 3 * SIZE * SIZE and plan.buffer_bytes("input") == 8 * 3 * SIZE * SIZE * 4
    assert plan.buffer_elements("score") == 8 and plan.buffer_bytes("anomaly_map") == 8 * SIZE * SIZE * 2
    assert [plan.call_batch(n) for n in (1, 3, 8)] == [1, 3, 8]
    assert plan.shape("input", 3) == (3, *IMG) and plan.shape("anomaly_map", 3) == (3, SIZE, SIZE)
    with pytest.raises(EdgeanoError, match="9 rows: this engine takes 1..8"):
        plan.call_batch(9)
    line = profile_error("m.engine", (9, *IMG), plan)
    assert "input shape (9, 3, 16, 16)" in line and f"min (1, 3, {SIZE}, {SIZE})" in line and f"max (8, 3, {SIZE}, {SIZE})" in line


def test_static_profile_pads_partial_batches():
    """A DLA engine from a dynamic ONNX gets a static profile (min = opt = max = 4): short calls pad."""
    plan = plan_io(ENGINE_TENSORS, ((4, *IMG),) * 3)
    assert (plan.min_batch, plan.max_batch) == (4, 4) and plan.call_batch(1) == 4
    assert batch_calls(6, plan.min_batch, plan.max_batch) == [(0, 4, 4), (4, 6, 4)]


def test_fixed_batch_engine_plan():
    fixed = [("input", "input", (2, *IMG), "float32"), ("score", "output", (2,), "float32")]
    plan = plan_io(fixed)
    assert not plan.dynamic and (plan.min_batch, plan.max_batch) == (2, 2)
    assert plan.call_batch(1) == 2 and plan.buffer_elements("score") == 2


@pytest.mark.parametrize("tensors, profile, expected", [
    ([("a", "input", (1, *IMG), "float32"), ("b", "input", (1, *IMG), "float32"), ("score", "output", (1,), "float32")],
     None, "expected one input"),
    ([("input", "input", (1, 3, -1, SIZE), "float32"), ("score", "output", (1,), "float32")], None, "only N dynamic"),
    ([("input", "input", (-1, *IMG), "float32"), ("score", "output", (4,), "float32")], ((1, *IMG),) * 3, "batch"),
    ([("input", "input", (2, *IMG), "float32"), ("score", "output", (1,), "float32")], None, "batch"),
    ([("input", "input", (-1, *IMG), "float32"), ("score", "output", (-1,), "float32")], None, "no optimisation profile"),
    ([("input", "input", (-1, *IMG), "float32"), ("score", "output", (-1,), "float32")],
     ((1, 3, 8, 8), (1, 3, 8, 8), (2, 3, 8, 8)), "does not match"),
    ([("input", "input", (-1, *IMG), "float32"), ("score", "output", (-1,), "float32")],
     ((4, *IMG), (1, *IMG), (8, *IMG)), "not ordered"),
])
def test_plan_refuses_engines_that_are_not_edgeano_artifacts(tensors, profile, expected):
    with pytest.raises(EdgeanoError, match=expected) as e:
        plan_io(tensors, profile, "x.engine")
    assert str(e.value).startswith("x.engine: ")


def test_fixed_batch_2_onnxruntime_artifact_scores_1_and_3_frames(tmp_path):
    """Engine.infer pads then slices for every runner (here ONNX Runtime on a batch-2 graph)."""
    path = tiny_onnx(tmp_path / "b2.onnx", batch=2)
    frames = [np.full((20, 20, 3), v, np.uint8) for v in (10, 100, 200)]
    with Engine.load(path, backend="onnxruntime") as eng:
        assert (eng.min_batch, eng.max_batch) == (2, 2)
        for n in (1, 3):
            res = eng.score(frames[:n])
            assert res.scores.shape == (n,) and res.maps.shape == (n, SIZE, SIZE)
            np.testing.assert_allclose(res.scores, [v / 255 for v in (10, 100, 200)[:n]], rtol=1e-5)
