"""Decode any image a production line produces into 8-bit BGR, or say why not.

Cameras and archives give grayscale, 16-bit, alpha and the odd truncated file; the rest of
edgeano only ever sees HxWx3 uint8 BGR, the same as a video frame from OpenCV.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded array (gray, BGR, BGRA; uint8/uint16/float) -> HxWx3 uint8 BGR."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)  # keep the top 8 bits: a fixed, content-independent map
    elif img.dtype != np.uint8:
        x = img.astype(np.float32)
        if x.size and float(np.nanmax(x)) <= 1.0:
            x = x * 255.0
        img = np.clip(np.nan_to_num(x), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)  # drop alpha: parts are photographed opaque
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    raise ValueError(f"unsupported image shape {img.shape}")


def read_image(path) -> Optional[np.ndarray]:
    """Read an image file as HxWx3 uint8 BGR; None when it is missing, corrupt or not an image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile+imdecode: works with any path encoding
        if data.size == 0:
            return None
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            return None
        return to_bgr8(img)
    except (OSError, ValueError, cv2.error):
        return None


def list_images(folder, recursive: bool = False) -> List[Path]:
    """Image files in `folder` (by suffix), sorted by name so splits are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def sample_frames(paths: Sequence[Path], n: int = 16) -> List[np.ndarray]:
    """Up to n decodable images, spread evenly over `paths` (parity checks, probes, benchmarks)."""
    paths = list(paths)
    if not paths:
        return []
    idx = np.unique(np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int))
    frames = [read_image(paths[i]) for i in idx]
    return [f for f in frames if f is not None]


def read_images(paths: Sequence[Path]) -> Tuple[List[np.ndarray], List[Path], List[Path]]:
    """Decode many files; returns (images, paths that decoded, paths skipped as unreadable)."""
    images, ok, skipped = [], [], []
    for p in paths:
        img = read_image(p)
        if img is None:
            skipped.append(Path(p))
        else:
            images.append(img)
            ok.append(Path(p))
    return images, ok, skipped


GRAY_TOLERANCE = 2  # max |B-G|, |G-R| (8-bit levels) for data to count as grayscale


def all_gray(images: List[np.ndarray]) -> bool:
    """True when every BGR image is gray to within GRAY_TOLERANCE levels (train on one channel)."""
    for im in images:
        b, g, r = (im[..., i].astype(np.int16) for i in range(3))
        if max(np.abs(b - g).max(), np.abs(g - r).max()) > GRAY_TOLERANCE:
            return False
    return True


def exposure_spread(images: List[np.ndarray]):
    """5th and 95th percentile of the images' mean brightness in [0, 1]. Exposure that varies a lot
    between good images swamps what a reconstruction model learns (MTD: GANomaly 0.64 image AUROC
    on raw pixels, 0.91-0.93 with per-image contrast normalisation; docs/benchmarks/ganomaly.md)."""
    step = max(1, len(images) // 500)  # an even sample: files sorted by name may group by session/exposure
    means = np.array([float(im.mean()) / 255.0 for im in images[::step]])
    lo, hi = np.percentile(means, [5, 95])
    return float(lo), float(hi)
