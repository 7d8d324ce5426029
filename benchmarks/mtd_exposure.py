"""Why GANomaly needs `--contrast standardize` on MTD: how much the good images' exposure varies,
and how well the simplest possible detector (nearest good training image, L2 over pixels) ranks
the test set with and without per-image contrast normalisation. No training, no torch.

    .venv/bin/python benchmarks/mtd_exposure.py --size 32 --json /tmp/mtd_exposure.json

If raw-pixel 1-NN is near chance while the standardised one is not, a pixel-reconstruction model
trained on raw pixels spends its capacity on brightness, and the contrast step is what fixes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.modules.setdefault("torch", None)  # numpy only

from edgeano.evaluation import metrics  # noqa: E402
from edgeano.data.datasets import load_dataset  # noqa: E402
from edgeano.data.images import read_images  # noqa: E402
from edgeano.data.preprocess import CONTRASTS, Preprocess, split_every  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def nn_auroc(train: np.ndarray, test: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of the squared L2 distance to the nearest training image."""
    a, b = train.reshape(len(train), -1).astype(np.float64), test.reshape(len(test), -1).astype(np.float64)
    d = (b ** 2).sum(1)[:, None] + (a ** 2).sum(1)[None] - 2 * b @ a.T
    return metrics.auroc(labels, d.min(1))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    ds = load_dataset(a.data, need_test=True)
    kept, _ = split_every(len(ds.train), 10)  # the images GANomaly trains on
    train, _, _ = read_images([ds.train[i] for i in kept])
    test, ok, _ = read_images([t.path for t in ds.test])
    by_path = {t.path: t.label for t in ds.test}
    labels = np.array([by_path[p] for p in ok])
    report = {"data": str(a.data), "size": a.size, "n_train": len(train), "n_test": int(labels.size)}
    pre = Preprocess(size=(a.size, a.size), color="GRAY", mean=(0.5,), std=(0.5,))
    btr, bte = pre.batch(train), pre.batch(test)  # [0, 1]; resized once, normalised both ways below
    means = btr.mean(axis=(1, 2, 3))
    report["train_image_mean"] = {k: round(float(v), 3) for k, v in
                                  zip(("min", "p05", "p50", "p95", "max"), np.percentile(means, [0, 5, 50, 95, 100]))}
    report["mean_brightness_auroc"] = round(metrics.auroc(labels, bte.mean(axis=(1, 2, 3))), 4)
    for contrast in CONTRASTS:
        p = dataclasses.replace(pre, contrast=contrast)
        report[f"nn_pixel_auroc_{contrast}"] = round(nn_auroc(p.normalize(btr), p.normalize(bte), labels), 4)
    print(json.dumps(report, indent=2))
    if a.json:
        from edgeano.fileio import write_json

        write_json(a.json, report)
    return report


if __name__ == "__main__":
    main()
