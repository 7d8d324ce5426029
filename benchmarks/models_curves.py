"""One picture of how the models train on MTD: the monitor column of each run's metrics.csv (test
AUROC per epoch, never used for selection) against the epoch, with the epoch best.pt holds (chosen
on synthetic defects, no test labels) as a dot. OpenCV only, as edgeano.evaluation.plots.

    .venv/bin/python benchmarks/models_curves.py --run ae=/tmp/mtd15/runs/ae/ae-l2:60 \\
        --run vae=/tmp/mtd15/runs/vae/vae-b01:49 ... --out docs/benchmarks/models_curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

W, H, L, R, T, B = 900, 520, 60, 190, 40, 50  # canvas, margins (the legend sits in the right one)
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127)]
Y0, Y1 = 0.3, 1.0


def xy(epoch: float, auc: float, epochs: int):
    x = L + (epoch - 1) / max(1, epochs - 1) * (W - L - R)
    y = H - B - (min(max(auc, Y0), Y1) - Y0) / (Y1 - Y0) * (H - T - B)
    return int(x), int(y)


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR:SELECTED_EPOCH")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    runs = []
    for spec in a.run:
        name, rest = spec.split("=", 1)
        run_dir, sel = rest.rsplit(":", 1)
        rows = [r for r in csv.DictReader(open(Path(run_dir) / "metrics.csv")) if r.get("test_auroc")]
        runs.append((name, [(int(r["epoch"]), float(r["test_auroc"])) for r in rows], int(sel)))
    epochs = max(e for _, pts, _ in runs for e, _ in pts)
    img = np.full((H, W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "MTD test image AUROC per epoch (monitor only); dot = best.pt (synthetic-defect choice)",
                (L, 25), font, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    for v in np.arange(Y0, Y1 + 1e-9, 0.1):
        p = xy(1, v, epochs)
        cv2.line(img, p, (W - R, p[1]), (225, 225, 225) if abs(v - 0.8) > 1e-6 else (150, 150, 150), 1)
        cv2.putText(img, f"{v:.1f}", (L - 35, p[1] + 4), font, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
    step = next(s for s in (10, 20, 25, 50, 100, 250, 500) if epochs / s <= 15)  # <= 15 labels that do not overlap
    for e in range(step, epochs + 1, step):
        p = xy(e, Y0, epochs)
        cv2.putText(img, str(e), (p[0] - 8, H - B + 18), font, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
    cv2.putText(img, "epoch", ((W - R) // 2, H - 12), font, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    cv2.rectangle(img, (L, T), (W - R, H - B), (20, 20, 20), 1)
    for i, (name, pts, sel) in enumerate(runs):
        c = COLOURS[i % len(COLOURS)]
        cv2.polylines(img, [np.array([xy(e, v, epochs) for e, v in pts], np.int32)], False, c, 2, cv2.LINE_AA)
        at = dict(pts).get(sel)
        if at is not None:
            cv2.circle(img, xy(sel, at, epochs), 5, c, -1, cv2.LINE_AA)
        y = T + 20 + 22 * i
        cv2.line(img, (W - R + 12, y - 4), (W - R + 36, y - 4), c, 3)
        cv2.putText(img, name, (W - R + 42, y), font, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    a.out.write_bytes(buf.tobytes())
    print(f"wrote {a.out}")
    return a.out


if __name__ == "__main__":
    main()
