"""How slow AnoGAN's own scoring is: wall time of the paper's latent search (Γ Adam steps on z per
image, `edgeano.models.anogan.latent_search`) against the single-pass izi_f graph of the same
checkpoint, per image, at a few batch sizes, on real images, in PyTorch on the CPU. The weights do
not change the cost, so any AnoGAN checkpoint of the same size and width gives the figure.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/latent_search_speed.py \\
        --checkpoint runs/anogan/exp/weights/best.pt --data ../shared/data/mtd --steps 500 --batches 1,16
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="images from test/ of this MVTec-layout folder")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batches", default="1,16", help="batch sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="searches per batch size (the median is reported)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from edgeano.data.datasets import load_dataset
    from edgeano.data.images import read_image
    from edgeano.models.anogan import latent_search
    from edgeano.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(a.checkpoint)
    model.eval()
    batches = [int(b) for b in a.batches.split(",")]
    items = load_dataset(a.data, need_test=True).test[: max(batches)]
    x_all = torch.from_numpy(model.preprocess.batch([read_image(t.path) for t in items]))
    report = {"checkpoint": str(a.checkpoint), "steps": a.steps, "threads": a.threads, "loadavg_start": os.getloadavg(),
              "input": list(x_all.shape[1:]), "by_batch": {}}
    for b in batches:
        x = x_all[:b]
        with torch.no_grad():
            model(x)  # warm-up
            t = time.perf_counter()
            for _ in range(20):
                model(x)
            single = (time.perf_counter() - t) / 20
        latent_search(model, x, steps=2)  # warm-up: the first backward pass sets up autograd and threads
        runs = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            latent_search(model, x, steps=a.steps)
            runs.append(time.perf_counter() - t)
        search = float(np.median(runs))
        report["by_batch"][b] = {"search_s_per_batch": round(search, 3), "search_s_per_image": round(search / b, 4),
                                 "single_pass_ms_per_image": round(1e3 * single / b, 4),
                                 "ratio": round(search / single, 1), "runs_s": [round(r, 3) for r in runs]}
    report["loadavg_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
