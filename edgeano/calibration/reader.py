"""Calibration images -> network inputs, through the artifact's own Preprocess.

The calibration set must look exactly like what the engine will see on the line, so images
go through `preprocess_of(meta)`, the same object the runtime uses; no second definition.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError

try:  # the base class is only a protocol (get_next); keep the reader importable without ORT's tools
    from onnxruntime.quantization import CalibrationDataReader
except ImportError:  # pragma: no cover - onnxruntime is a core dependency
    CalibrationDataReader = object

RECOMMENDED_MIN = 300  # below this the activation ranges of rare-but-normal textures are under-sampled


def calibration_paths(data_dir, num: int) -> List[Path]:
    """Up to `num` normal images from `data_dir` (MVTec: train/good; else the folder itself),
    spread evenly over the sorted list so the choice is reproducible and covers the whole set."""
    ds = load_dataset(data_dir)
    paths = list(ds.train)
    if not paths:
        raise EdgeanoError(f"no normal images in {data_dir}: calibration needs train/good (MVTec layout) or a folder of good images")
    if num >= len(paths):
        return paths
    idx = np.unique(np.linspace(0, len(paths) - 1, num).round().astype(int))
    return [paths[i] for i in idx]


def load_frames(paths: Sequence[Path], what: str = "images") -> List[np.ndarray]:
    """Decode `paths` (BGR uint8); unreadable files are skipped with a count, never a crash."""
    frames, bad = [], 0
    for p in paths:
        img = read_image(p)
        if img is None:
            bad += 1
        else:
            frames.append(img)
    if bad:
        print(f"warning: skipped {bad} unreadable {what}", file=sys.stderr)
    return frames


class ImageCalibrationReader(CalibrationDataReader):
    """ONNX Runtime CalibrationDataReader over preprocessed frames, `batch` images per call.

    Implements `__len__`/`set_range` so quantize_static's CalibStridedMinMax can collect ranges in
    chunks: memory stays bounded by one chunk of activations instead of all N images at once.
    """

    def __init__(self, frames: Sequence[np.ndarray], preprocess: Preprocess, input_name: str, batch: int = 1,
                 progress: bool = True):
        # frames stay uint8 until asked for: 4x less memory than holding the float tensors
        self.chunks = [list(frames[i : i + batch]) for i in range(0, len(frames), batch)]
        self.preprocess = preprocess
        self.input_name = input_name
        self.start, self.end = 0, len(self.chunks)
        self.pos = 0
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=len(frames), desc="calibrating", unit="img", file=sys.stderr, leave=False)

    def __len__(self) -> int:
        return len(self.chunks)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.chunks))
        self.pos = self.start

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.pos >= self.end:
            return None
        x = self.preprocess.batch(self.chunks[self.pos])
        self.pos += 1
        if self.bar is not None:
            self.bar.update(x.shape[0])
        return {self.input_name: x}

    def rewind(self) -> None:
        self.set_range(0, len(self.chunks))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
