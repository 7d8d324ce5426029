"""On-device INT8 calibration (TensorRT 8.6 / 10.x only) for a plain FP32 ONNX.

TensorRT's IInt8EntropyCalibrator2 feeds normal images, preprocessed by the artifact's own
`Preprocess`, through the network and picks per-tensor scales. The result is kept in a
calibration cache beside the engine so a rebuild skips calibration. TensorRT 11 removed
implicit quantization: there INT8 needs the QDQ ONNX from `edgeano calibrate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from edgeano.data.images import list_images, read_images
from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_bytes

MAX_IMAGES = 512  # enough for stable entropy scales; more only slows the build


def calibration_images(folder, limit: int = MAX_IMAGES) -> List[Path]:
    """Images for calibration: an MVTec folder's train/good, else every image under `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeanoError(f"--calib-data {folder} is not a folder of images")
    good = folder / "train" / "good"
    paths = list_images(good) if good.is_dir() else list_images(folder, recursive=True)
    if not paths:
        raise EdgeanoError(f"--calib-data {folder}: no images found (.png/.jpg/...)")
    if len(paths) > limit:  # evenly spaced, so the subset covers the whole folder
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit)]
    return paths


def calibration_batches(paths: List[Path], preprocess: Preprocess, batch: int):
    """NCHW float32 batches of exactly `batch` images (the last one padded by repetition)."""
    for start in range(0, len(paths), batch):
        frames, _ok, _bad = read_images(paths[start : start + batch])
        if not frames:
            continue
        while len(frames) < batch:
            frames.append(frames[len(frames) % max(1, len(frames))])
        yield preprocess.batch(frames)


def make_calibrator(paths: List[Path], preprocess: Preprocess, batch: int, cache_path):
    """An IInt8EntropyCalibrator2 over `paths`; defined here because the base class needs tensorrt."""
    import pycuda.driver as cuda
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # TensorRT requires the explicit base init
            self.cache_path = Path(cache_path)
            self.batch = int(batch)
            self.batches = calibration_batches(paths, preprocess, self.batch)
            self.count = 0
            self.device_input = cuda.mem_alloc(self.batch * int(np.prod(preprocess.input_shape)) * 4)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names) -> Optional[List[int]]:
            try:
                data = next(self.batches)
            except StopIteration:
                return None  # no more data: TensorRT computes the scales now
            cuda.memcpy_htod(self.device_input, np.ascontiguousarray(data))
            self.count += data.shape[0]
            print(f"  calibrating: {self.count}/{len(paths)} images", file=sys.stderr, end="\r")
            return [int(self.device_input)]

        def read_calibration_cache(self):
            if self.cache_path.is_file():
                print(f"  using calibration cache {self.cache_path}", file=sys.stderr)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            write_bytes(self.cache_path, bytes(cache))
            print(f"\n  wrote calibration cache {self.cache_path}", file=sys.stderr)

    return EntropyCalibrator()
