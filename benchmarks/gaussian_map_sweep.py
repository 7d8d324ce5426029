"""The design sweep behind the Gaussian model's map defaults (docs/benchmarks/gaussian_map.md):
the synthetic-defect protocol on MTD's train/good, and (for comparison only) MTD's test split,
for map-head variants, from backbone features cached once.

    nice -n 10 .venv/bin/python benchmarks/gaussian_map_sweep.py --cache /tmp/sweep \
        --variants knn:4,5,6:1024 knn:5,6:1024 gauss:3,4,5 --json /tmp/sweep/rows.json

Variant syntax: `knn:LEVELS:MEMORY[:OPTIONS]` or `gauss:LEVELS[:OPTIONS]`, OPTIONS a '+'-joined
subset of `random` (random memory instead of the coreset), `nopos` (no per-position statistics),
`ratio` (distance / normal mean - 1 instead of z), `root` (distance, not squared),
`proj128` (random projection to 128 dims first), `cand60k` (60k coreset candidates), `selfW` (add W x
each patch's squared distance to its own tile's mean patch, scaled to the kNN distance's normal mean),
`poolK` (K x K neighbourhood averaging of the features instead of 3 x 3), `blurS` (Gaussian blur of
sigma S at the 56 x 56 metric grid instead of 1), `catK` (the features averaged over a K x K
neighbourhood appended to each patch's descriptor).

Protocol as in the sweep of the doc: 2 folds over train/good (fold = index % 2); every train image
gets one synthetic-defect copy (edgeano.evaluation.synthetic, seed 0) scored by the fold that did
not see its source; the global Rippel score (levels 4-7, avg+max) out of fold the same way; maps
at 56 x 56 for the pixel metrics (masks nearest-resized); the MTD test split scored by the fit on
all train images. Feature caches: ~1.6 GB of float16 in --cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from edgeano.data.datasets import load_dataset
from edgeano.data.images import read_image
from edgeano.evaluation.metrics import aupro, auroc, pixel_auroc, threshold_at_fpr
from edgeano.evaluation.synthetic import resize_mask, synthesize
from edgeano.models.backbones import NORMALIZATION, pretrained
from edgeano.models.common import Normalize
from edgeano.models.gaussian import ledoit_wolf, precision_factor
from edgeano.models.patch_map import blur_matrix, bilinear_matrix, greedy_coreset
from edgeano.train.gaussian import make_preprocess

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (3, 4, 5, 6, 7)
K = 2
RES = 56  # metric resolution
GRID = 14  # the 224 px map grid (stride 16)


def cache_features(ds, cache: Path, size: int = 224):
    """{part: {level: (n, C, h, w) float16}} for train, test and the synthetic copies of train."""
    out = {}
    pre = make_preprocess("efficientnet-lite0", size)
    net, _ = pretrained("efficientnet-lite0", num_classes=0)
    net.eval()
    norm = Normalize(*NORMALIZATION["efficientnet-lite0"])
    train = [read_image(p) for p in ds.train]
    syn = synthesize(train, seed=0)
    parts = {"train": train, "test": [read_image(t.path) for t in ds.test], "syn": syn.images}
    for part, frames in parts.items():
        f = cache / f"{part}.npz"
        if not f.is_file():
            maps = {lv: [] for lv in LEVELS}
            for i in range(0, len(frames), 4):
                with torch.inference_mode():
                    fs = net.forward_features(norm(torch.from_numpy(pre.batch(frames[i:i + 4]))), LEVELS)
                for lv, m in zip(LEVELS, fs):
                    maps[lv].append(m.half().numpy())
                print(f"features {part} {i}/{len(frames)}", file=sys.stderr, end="\r")
            np.savez(f, **{f"l{lv}": np.concatenate(v) for lv, v in maps.items()})
        z = np.load(f)
        out[part] = {lv: torch.from_numpy(z[f"l{lv}"]) for lv in LEVELS}
    out["syn_masks"] = np.stack([resize_mask(m, (RES, RES)) for m in syn.masks])
    out["test_masks"] = np.stack([np.zeros((RES, RES), np.uint8) if t.mask is None else
                                  resize_mask(read_image(t.mask)[:, :, 0] > 127, (RES, RES)) for t in ds.test])
    out["labels"] = np.array([t.label for t in ds.test])
    return out


def up(m: torch.Tensor, n: int, sigma: float = 0.0) -> torch.Tensor:
    r = torch.from_numpy(blur_matrix(n, sigma) @ bilinear_matrix(n, m.shape[-2])).float()
    c = torch.from_numpy(blur_matrix(n, sigma) @ bilinear_matrix(n, m.shape[-1])).float()
    return r @ m @ c.T


def patches(feats, levels, idx=None, pool=3):
    out = []
    for lv in levels:
        f = feats[lv] if idx is None else feats[lv][idx]
        f = F.avg_pool2d(f.float(), pool, 1, pool // 2, count_include_pad=False)
        out.append(f if f.shape[-1] == GRID else up(f, GRID))
    return torch.cat(out, 1)


def flat(p):
    return p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])


def knn(q, mem, bs=8192):
    c = mem.mean(0)
    m = mem - c
    msq = (m * m).sum(1)
    out = []
    for i in range(0, len(q), bs):
        x = q[i:i + bs] - c
        out.append(((x * x).sum(1, keepdim=True) - 2 * x @ m.T + msq).amin(1).clamp_min(0))
    return torch.cat(out)


def gauss_fit(x, n_fit=40000):
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n_fit]
    mu, cov, _ = ledoit_wolf(x[idx])
    return mu.float(), precision_factor(cov).float()


def head_maps(kind, levels, memory, opts, F_):
    """Out-of-fold distance grids for train (clean) and syn, and the all-train fit's for test."""
    n = len(F_["train"][levels[0]])
    fold = np.arange(n) % K
    res = {}
    if kind == "knn":
        pool = next((int(o[4:]) for o in opts if o.startswith("pool")), 3)
        a, s, t = (patches(F_[p], levels, pool=pool) for p in ("train", "syn", "test"))
        cat = next((int(o[3:]) for o in opts if o.startswith("cat")), 0)
        if cat:  # each patch described at two neighbourhoods, `pool` and `cat`: one kNN, distances add
            a, s, t = (torch.cat([x, patches(F_[p], levels, pool=cat)], 1) for x, p in zip((a, s, t), ("train", "syn", "test")))
        proj = None
        if "proj128" in opts:
            proj = torch.randn(a.shape[1], 128, generator=torch.Generator().manual_seed(7)) / 128 ** 0.5
        pj = (lambda x: x @ proj) if proj is not None else (lambda x: x)
        ncand = 60000 if "cand60k" in opts else 30000

        def memory_of(idx, seed):
            x = pj(flat(a[idx]))
            x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:ncand]]
            if "random" in opts:
                return x[:memory]
            return x[greedy_coreset(x, memory, seed=seed, proj=32)]

        w_self = next((float(o[4:]) for o in opts if o.startswith("self")), 0.0)

        def dist(p, mem):
            d = knn(pj(flat(p)), mem).reshape(len(p), GRID, GRID)
            if w_self:  # + how far each patch is from its own tile's mean patch (a region unlike the rest of the tile)
                d = d + w_self * self_scale * ((p - p.mean((2, 3), keepdim=True)) ** 2).sum(1)
            return d.sqrt() if "root" in opts else d

        self_scale = 1.0
        if w_self:  # both terms in the same units: the mean normal knn distance per mean normal self distance
            probe = a[:64]
            d0 = knn(pj(flat(probe)), memory_of(torch.arange(64, n), 9)).mean()
            self_scale = float(d0 / ((probe - probe.mean((2, 3), keepdim=True)) ** 2).sum(1).mean())

        res["clean"], res["syn"] = torch.zeros(n, GRID, GRID), torch.zeros(n, GRID, GRID)
        for j in range(K):
            ti, ho = torch.from_numpy(np.flatnonzero(fold != j)), torch.from_numpy(np.flatnonzero(fold == j))
            mem = memory_of(ti, j)
            res["clean"][ho], res["syn"][ho] = dist(a[ho], mem), dist(s[ho], mem)
        res["test"] = dist(t, memory_of(torch.arange(n), 5))
    else:  # shared Gaussian per level, its d^2 / C summed at the 28 x 28 grid
        res = {p: 0 for p in ("clean", "syn", "test")}
        for lv in levels:
            P = {p: F.avg_pool2d(F_[p][lv].float(), 3, 1, 1, count_include_pad=False) for p in ("train", "syn", "test")}
            C, r = P["train"].shape[1], P["train"].shape[-1]

            def d2(x, mu, w):
                return ((((flat(x) - mu) @ w) ** 2).sum(1) / C).reshape(len(x), r, r)

            mc, ms = torch.zeros(n, r, r), torch.zeros(n, r, r)
            for j in range(K):
                ti, ho = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
                mu, w = gauss_fit(flat(P["train"][ti]))
                mc[ho], ms[ho] = d2(P["train"][ho], mu, w), d2(P["syn"][ho], mu, w)
            mu, w = gauss_fit(flat(P["train"]))
            for part, m in (("clean", mc), ("syn", ms), ("test", d2(P["test"], mu, w))):
                res[part] = res[part] + up(m, 28)
    return res


def global_scores(F_):
    """Out-of-fold Rippel scores (levels 4-7, avg+max, sum d^2 / D) for clean and syn; test by the all-train fit."""
    def pooled(part):
        return [torch.cat([F_[part][lv].float().mean((2, 3)), F_[part][lv].float().amax((2, 3))], 1).double() for lv in (4, 5, 6, 7)]

    a, s, t = pooled("train"), pooled("syn"), pooled("test")
    dim = sum(x.shape[1] for x in a)
    n = len(a[0])
    fold = np.arange(n) % K

    def fit_score(idx, parts):
        ws = [(lambda m: (m[0], precision_factor(m[1])))(ledoit_wolf(f[idx])) for f in a]
        return [sum((((f - mu) @ w) ** 2).sum(1) for (mu, w), f in zip(ws, p)).numpy() / dim for p in parts]

    gc, gs = np.zeros(n), np.zeros(n)
    for j in range(K):
        ti, ho = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        c, s_ = fit_score(ti, [[f[ho] for f in a], [f[ho] for f in s]])
        gc[ho], gs[ho] = c, s_
    return {"clean": gc, "syn": gs, "test": fit_score(np.arange(n), [t])[0]}


def evaluate_variant(maps, g, F_, opts):
    mc = maps["clean"]
    if "nopos" in opts:
        norm = lambda m: m  # noqa: E731
    elif "ratio" in opts:
        mu = mc.mean(0)
        norm = lambda m: m / mu - 1  # noqa: E731
    else:
        mu, sd = mc.mean(0), mc.std(0).clamp_min(1e-6)
        norm = lambda m: (m - mu) / sd  # noqa: E731
    sigma = next((float(o[4:]) for o in opts if o.startswith("blur")), 1.0)  # at the 56 x 56 metric grid
    A = {p: up(norm(maps[p]), RES, sigma).numpy() for p in ("clean", "syn", "test")}
    x = {p: A[p].reshape(len(A[p]), -1).max(1) for p in A}
    labels = F_["labels"]
    n = len(x["clean"])
    y = np.r_[np.zeros(n), np.ones(n)]

    def z(v, ref):
        return (v - ref.mean()) / ref.std()

    def tpr(normal, anom):
        return float((anom >= threshold_at_fpr(normal, 0.01)).mean())

    row = {"synthetic": {"map_auroc": auroc(y, np.r_[x["clean"], x["syn"]])}, "mtd": {"map_auroc": auroc(labels, x["test"])}}
    for w in (0.5, 1.0, 2.0):
        f = {p: z(g[p], g["clean"]) + w * z(x[p], x["clean"]) for p in x}
        row["synthetic"][f"fused_w{w:g}"] = auroc(y, np.r_[f["clean"], f["syn"]])
        row["synthetic"][f"fused_w{w:g}_tpr"] = tpr(f["clean"], f["syn"])
        row["mtd"][f"fused_w{w:g}"] = auroc(labels, f["test"])
    masks = np.concatenate([np.zeros((n, RES, RES), np.uint8), F_["syn_masks"]])
    both = np.concatenate([A["clean"], A["syn"]])
    row["synthetic"]["pixel_auroc"], row["synthetic"]["aupro"] = pixel_auroc(masks, both), aupro(masks, both)
    row["mtd"]["pixel_auroc"], row["mtd"]["aupro"] = pixel_auroc(F_["test_masks"], A["test"]), aupro(F_["test_masks"], A["test"])
    return {k: {m: round(float(v), 4) for m, v in d.items()} for k, d in row.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mtd"))
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--variants", nargs="+", default=["knn:4,5,6:1024"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    a.cache.mkdir(parents=True, exist_ok=True)
    F_ = cache_features(load_dataset(a.data, need_test=True), a.cache)
    g = global_scores(F_)
    base = {"synthetic_auroc": auroc(np.r_[np.zeros(len(g["clean"])), np.ones(len(g["syn"]))], np.r_[g["clean"], g["syn"]]),
            "mtd_auroc": auroc(F_["labels"], g["test"])}
    rows = [{"variant": "global only", **{k: round(v, 4) for k, v in base.items()}}]
    print(json.dumps(rows[0]), flush=True)
    for spec in a.variants:
        t0 = time.time()
        parts = spec.split(":")
        kind, levels = parts[0], tuple(int(v) for v in parts[1].split(","))
        memory = int(parts[2]) if kind == "knn" else 0
        opts = set((parts[3] if kind == "knn" and len(parts) > 3 else parts[2] if kind == "gauss" and len(parts) > 2 else "").split("+"))
        row = {"variant": spec, **evaluate_variant(head_maps(kind, levels, memory, opts, F_), g, F_, opts),
               "seconds": round(time.time() - t0)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        from edgeano.fileio import write_text

        write_text(a.json, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
