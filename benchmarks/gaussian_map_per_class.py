"""Pixel AUROC of a Gaussian map artifact per MTD defect class, and a picture of one class's maps:
where the pooled pixel AUROC comes from (docs/benchmarks/gaussian_map.md).

    .venv/bin/python benchmarks/gaussian_map_per_class.py --model gaussian_map.onnx --data ../shared/data/mtd \
        --picture uneven --out docs/benchmarks/gaussian_map_uneven.png

Maps are taken at 56 x 56 (every 4th pixel of the 224 x 224 map), masks nearest-resized to that.
Per class: that class's defect images with all good images (the pooled metric restricted to one
class), and the class alone (mask against the rest of its own images); each class's share of all
defect pixels. Torch-free: ONNX Runtime through the public Engine.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np

sys.modules.setdefault("torch", None)

from edgeano.data.datasets import load_dataset  # noqa: E402
from edgeano.data.images import read_image  # noqa: E402
from edgeano.evaluation.metrics import pixel_auroc  # noqa: E402
from edgeano.evaluation.plots import heat_tile, map_colours  # noqa: E402
from edgeano.evaluation.synthetic import resize_mask  # noqa: E402
from edgeano.runtime.engine import Engine  # noqa: E402

RES, STEP = 56, 4


def score(model: str, data: str):
    eng = Engine.load(model, backend="onnxruntime")
    ds = load_dataset(data)
    maps, masks, kinds, frames = [], [], [], []
    for t in ds.test:
        img = read_image(t.path)
        maps.append(eng.infer(eng.preprocess.batch([img]))["anomaly_map"][0][::STEP, ::STEP])
        mk = np.zeros((RES, RES), np.uint8)
        if t.mask is not None:  # as edgeano eval reads them
            mk = resize_mask(cv2.imread(str(t.mask), cv2.IMREAD_GRAYSCALE) > 127, (RES, RES))
        masks.append(mk)
        kinds.append(t.defect)
        frames.append(img)
    return eng.meta, np.stack(maps), np.stack(masks), np.array(kinds), frames


def per_class(maps, masks, kinds) -> dict:
    good = kinds == "good"
    out = {"pooled": round(pixel_auroc(masks, maps), 4)}
    for k in sorted(set(kinds) - {"good"}):
        sel, alone = (kinds == k) | good, kinds == k
        out[k] = {"with_good": round(pixel_auroc(masks[sel], maps[sel]), 4),
                  "alone": round(pixel_auroc(masks[alone], maps[alone]), 4),
                  "share_of_defect_pixels": round(float(masks[alone].sum() / masks.sum()), 3), "images": int(alone.sum())}
    return out


def picture(frames, maps, masks, kinds, cls: str, map_meta: dict, out: str, n: int = 8) -> None:
    """`n` tiles of class `cls`: the image above, the map over it below, in the artifact's map units
    (edgeano.evaluation.plots, the eval grid's and the camera overlay's colour rule)."""
    idx = [i for i, k in enumerate(kinds) if k == cls]
    idx = idx[:: max(1, len(idx) // n)][:n]
    levels, caption = map_colours(map_meta, None)
    gap = np.full((4, 224, 3), 255, np.uint8)
    tiles = []
    for i in idx:
        mask = cv2.resize(masks[i], (224, 224), interpolation=cv2.INTER_NEAREST)
        plain = heat_tile(frames[i], np.zeros((224, 224), np.float32), lambda m: m, mask, alpha=0.0)
        heat = heat_tile(frames[i], cv2.resize(maps[i], (224, 224)), levels, mask, alpha=0.5)
        tiles += [np.vstack([plain, gap, heat]), np.full((452, 4, 3), 255, np.uint8)]
    grid = np.hstack(tiles)
    cap = np.full((26, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(cap, f"MTD '{cls}' test tiles: top the tile, bottom the map in {caption}; white: ground truth",
                (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    img = cv2.resize(np.vstack([grid, cap]), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    cv2.imwrite(out, img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a Gaussian ONNX with an anomaly map")
    ap.add_argument("--data", required=True, help="an MVTec-layout folder with ground_truth masks")
    ap.add_argument("--picture", default=None, help="a defect class to draw")
    ap.add_argument("--out", default="gaussian_map_class.png")
    a = ap.parse_args(argv)
    meta, maps, masks, kinds, frames = score(a.model, a.data)
    res = per_class(maps, masks, kinds)
    if a.picture:
        picture(frames, maps, masks, kinds, a.picture, meta["map"], a.out)
        res["picture"] = a.out
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
