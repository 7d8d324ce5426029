"""A small MVTec-layout data set made offline from the bundled CC0 gravel texture.

Normal images are random crops of the texture (flips, small brightness changes); anomalies
add a defect like those on a line: a scratch, a dark or bright blob, a smeared patch. Used by
`edgeano demo` and by the tests that must always run. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from edgeano.errors import EdgeanoError

TEXTURE = Path(__file__).resolve().parent.parent / "assets" / "gravel.png"
DEFECTS = ("scratch", "spot", "smear")


def _texture() -> np.ndarray:
    tex = cv2.imread(str(TEXTURE), cv2.IMREAD_GRAYSCALE)
    if tex is None:
        raise EdgeanoError(f"bundled texture missing: {TEXTURE} (reinstall edgeano)")
    return tex


def _normal(tex: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    crop = int(size * 1.5)
    y, x = rng.integers(0, tex.shape[0] - crop), rng.integers(0, tex.shape[1] - crop)
    img = cv2.resize(tex[y : y + crop, x : x + crop], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1, :]
    gain = rng.uniform(0.92, 1.08)
    img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    # a faint warm tint so the colour path is exercised, as on a real part
    return cv2.merge([img, np.clip(img * 0.97, 0, 255).astype(np.uint8), np.clip(img * 1.03, 0, 255).astype(np.uint8)])


def _defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    out, mask = img.copy(), np.zeros((h, w), np.uint8)
    if kind == "scratch":
        p1 = (int(rng.integers(0, w // 3)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(2 * w // 3, w)), int(rng.integers(0, h)))
        t = max(2, w // 40)
        cv2.line(out, p1, p2, (235, 235, 235), t, cv2.LINE_AA)
        cv2.line(mask, p1, p2, 255, t)
    elif kind == "spot":
        c = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        r = int(rng.integers(max(3, w // 14), max(4, w // 7)))
        cv2.circle(out, c, r, (20, 20, 25), -1, cv2.LINE_AA)
        cv2.circle(mask, c, r, 255, -1)
    else:  # smear: a blurred patch, texture lost
        s = int(rng.integers(w // 5, w // 3))
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        out[y : y + s, x : x + s] = cv2.GaussianBlur(out[y : y + s, x : x + s], (0, 0), sigmaX=s / 4)
        mask[y : y + s, x : x + s] = 255
    return out, mask


def texture_frames(n: int, size: int, seed: int = 0) -> List[np.ndarray]:
    """n normal BGR crops of the bundled texture photo: real input when the user gave no images."""
    rng = np.random.default_rng(seed)
    tex = _texture()
    return [_normal(tex, rng, size) for _ in range(n)]


def make_texture_dataset(root, n_train: int = 60, n_test_good: int = 20, n_test_bad: int = 8, size: int = 128, seed: int = 0) -> Path:
    """Write an MVTec AD layout under `root`: train/good, test/good, test/<defect>, ground_truth/<defect>."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    tex = _texture()
    (root / "train" / "good").mkdir(parents=True, exist_ok=True)
    (root / "test" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), _normal(tex, rng, size))
    for i in range(n_test_good):
        cv2.imwrite(str(root / "test" / "good" / f"{i:03d}.png"), _normal(tex, rng, size))
    for kind in DEFECTS:
        (root / "test" / kind).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n_test_bad):
            img, mask = _defect(_normal(tex, rng, size), kind, rng)
            cv2.imwrite(str(root / "test" / kind / f"{i:03d}.png"), img)
            cv2.imwrite(str(root / "ground_truth" / kind / f"{i:03d}_mask.png"), mask)
    return root
