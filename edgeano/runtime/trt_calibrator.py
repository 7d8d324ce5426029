"""On-device INT8 calibration (TensorRT 8.6 / 10.x only) for a plain FP32 ONNX.

TensorRT's IInt8EntropyCalibrator2 feeds normal images, preprocessed by the artifact's own
`Preprocess`, through the network and picks per-tensor scales. The images are picked by the same
function as ONNX Runtime calibration (`edgeano.calibration.reader.calibration_paths`). The result
is kept in a calibration cache beside the engine, keyed by `calibration_cache_key`, so a rebuild
with the same inputs skips calibration. TensorRT 11 removed implicit quantization: there INT8
needs the QDQ ONNX from `edgeano calibrate`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edgeano.data.images import read_images
from edgeano.data.preprocess import Preprocess
from edgeano.fileio import write_bytes

MAX_IMAGES = 512  # enough for stable entropy scales; more only slows the build


def calibration_cache_key(onnx_sha256: str, trt_version: str, paths: Sequence[Path], batch: int) -> str:
    """16 hex chars over everything that decides the scales: the ONNX, the TensorRT version, the
    calibration images (names, sizes, modification times) and the batch. Another image set or a
    TensorRT upgrade gives another key, so stale scales are never reused."""
    images = []
    for p in paths:
        try:
            st = Path(p).stat()
            images.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            images.append([str(p), None, None])
    doc = {"onnx": onnx_sha256, "tensorrt": str(trt_version), "batch": int(batch), "images": images}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


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
