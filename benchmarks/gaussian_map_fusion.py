"""Fusion rules for the Gaussian map model's image score (issue 14, image-AUROC target), chosen by
the synthetic-defect protocol, MTD's test split reported alongside (docs/benchmarks/gaussian_map.md).

    nice -n 15 .venv/bin/python benchmarks/gaussian_map_fusion.py --cache /tmp/i14_fusion.npz

1. (once, cached in --cache) fit_gaussian with the defaults on MTD train/good, every train image
   copied once as a synthetic defect (761 instead of the default 160, for resolution); keep the
   out-of-fold evidence: global (Rippel) score g and map maximum mx of the clean images and of
   their synthetic copies; then g and mx of the final model on MTD test (PyTorch, one pass).
2. every rule below uses out-of-fold normal statistics only; its threshold is the 1 % out-of-fold
   FPR point; synthetic AUROC / TPR decide, MTD columns are for reading only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def capture(data: str, out: Path) -> None:
    import edgeano.train.gaussian as tg
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image
    from edgeano.train.gaussian_map import upsampled

    cap = {}
    calibrate = tg.calibrate

    def keep(model, oof, fpr, masks=None, kinds=None, k=0):  # calibrate, then keep its out-of-fold evidence
        meta = calibrate(model, oof, fpr, masks, kinds, k)
        cap.update(g=oof.g.copy(), mx=upsampled(model, oof.d)[0], g_syn=oof.g_syn.copy(), smx=upsampled(model, oof.d_syn)[0],
                   fusion=np.array(model.fusion.tolist()))
        return meta

    tg.calibrate = keep
    ds = load_dataset(data, need_test=True)
    t0 = time.perf_counter()
    model, meta = tg.fit_gaussian(ds.train, synthetic=len(ds.train))
    tg.calibrate = calibrate
    print(f"fit {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    g, mx = [], []
    for i in range(0, len(ds.test), 8):
        with torch.no_grad():
            o = model(torch.from_numpy(model.preprocess.batch([read_image(t.path) for t in ds.test[i:i + 8]])))
        g.append(o["global_score"].numpy())
        mx.append(o["anomaly_map"].amax((1, 2)).numpy())
    np.savez(out, test_g=np.concatenate(g), test_mx=np.concatenate(mx), test_labels=np.array([t.label for t in ds.test]), **cap)


def rules(d) -> dict:
    from scipy.special import log_ndtr

    g, mx = d["g"], d["mx"]
    sd_g, sd_m, floor = d["fusion"]
    mg, mm = g.mean(), mx.mean()
    out = {"global only (the score-only model's ranking)": lambda G, M: G}
    for w in (0.5, 1.0, 2.0):
        out[f"sum, map weight {w:g}" + (" (shipped)" if w == 1 else "")] = \
            (lambda w: lambda G, M: G / sd_g + w * (M - floor) / sd_m)(w)
    for q in (90, 95, 99, 99.9):  # map evidence only above what normal images reach
        out[f"hinge: global + map above its normal p{q:g}"] = \
            (lambda t: lambda G, M: G / sd_g + np.maximum(M - t, 0) / sd_m)(np.percentile(mx, q))
    out["Fisher, normal tails: -log P(z_g) - log P(z_m)"] = lambda G, M: -log_ndtr(-(G - mg) / sd_g) - log_ndtr(-(M - mm) / sd_m)
    out["max of the two z"] = lambda G, M: np.maximum((G - mg) / sd_g, (M - mm) / sd_m)
    return out


def main(argv=None):
    from edgeano.evaluation.metrics import auroc, threshold_at_fpr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mtd"))
    ap.add_argument("--cache", required=True, help="npz of the captured evidence (made on the first run)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not Path(a.cache).exists():
        capture(a.data, Path(a.cache))
    d = np.load(a.cache)
    lab = d["test_labels"]
    print("| rule | synthetic AUROC | synthetic TPR | MTD AUROC | MTD TPR | MTD FPR |\n|---|---|---|---|---|---|")
    for name, f in rules(d).items():
        clean, syn, test = f(d["g"], d["mx"]), f(d["g_syn"], d["smx"]), f(d["test_g"], d["test_mx"])
        thr = threshold_at_fpr(clean, 0.01)
        y = np.r_[np.zeros(len(clean)), np.ones(len(syn))]
        print(f"| {name} | {auroc(y, np.r_[clean, syn]):.4f} | {(syn >= thr).mean():.3f} | {auroc(lab, test):.4f} | "
              f"{(test[lab == 1] >= thr).mean():.3f} | {100 * (test[lab == 0] >= thr).mean():.1f} % |")


if __name__ == "__main__":
    main()
