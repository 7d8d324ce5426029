"""export_onnx: metadata in the graph, eval mode kept, dynamic batch honoured."""

from __future__ import annotations

import numpy as np
import onnx

from edgeano.artifact import read_onnx_metadata
from edgeano.export.onnx_export import export_onnx
from edgeano.models.checkpoint import checkpoint_metadata, load_checkpoint
from edgeano.runtime import Engine


def test_export_leaves_model_in_eval_mode_and_batches(gaussian_run, texture_data, tmp_path):
    model, ckpt = load_checkpoint(gaussian_run)
    model.train()  # a caller's model may be in training mode; the graph must still be inference
    path = export_onnx(model, tmp_path / "m.onnx", checkpoint_metadata(model, ckpt), dynamic_batch=True)
    assert not model.training
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert read_onnx_metadata(path)["dynamic_batch"] is True
    import cv2

    frames = [cv2.imread(str(p)) for p in sorted((texture_data / "test" / "good").iterdir())[:5]]
    with Engine.load(path, backend="onnxruntime") as eng:
        together = eng.score(frames).scores
        one_by_one = np.concatenate([eng.score([f]).scores for f in frames])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5)
