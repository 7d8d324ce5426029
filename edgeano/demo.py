"""`edgeano demo`: the whole slice offline on the bundled default data, by the same functions
the commands call: make data -> train Gaussian (Lite0) -> eval PyTorch -> export ONNX (+ parity)
-> eval ONNX Runtime -> bench both -> plots. Returns the summary (`edgeano demo` prints it)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict

from edgeano.data.synthetic import make_texture_dataset
from edgeano.errors import EdgeanoError
from edgeano.fileio import write_json

report = logging.getLogger(__name__)  # progress; the CLI prints it, and the summary
DEMO_SET = {"n_train": 80, "n_test_good": 30, "n_test_bad": 10, "size": 160}
MARKER = "demo_dataset.json"  # written last: a data set without it (an interrupted older demo) is made again
MIN_SIZE, MAX_SIZE = 32, 1024  # the Gaussian model's backbone needs >= 32 px


def demo_dataset(out_dir, seed: int = 0) -> Path:
    """<out>/data, made in a temp folder beside it and renamed into place only when complete, so an
    interrupted demo never leaves a partial data set that the next one would reuse."""
    data = Path(out_dir) / "data"
    want = dict(DEMO_SET, seed=seed)
    try:
        if json.loads((data / MARKER).read_text()) == want:
            report.info(f"[1/5] reusing the demo data set in {data}")
            return data
    except (OSError, ValueError):
        pass
    report.info(f"[1/5] making the demo data set in {data} (crops of a CC0 gravel photo with scratches, spots, smears)")
    data.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".data.", suffix=".tmp", dir=data.parent))
    old = data.with_name(staged.name.replace(".tmp", ".old"))
    try:
        make_texture_dataset(staged, seed=seed, **DEMO_SET)
        write_json(staged / MARKER, want)
        if data.exists():  # incomplete or made with other settings
            os.rename(data, old)
        os.rename(staged, data)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return data


def run_demo(out: str = "runs/demo", img_size: int = 224, seed: int = 0) -> Dict:
    from edgeano.bench import bench
    from edgeano.data.datasets import load_dataset
    from edgeano.evaluation.loop import evaluate, public, write_plots
    from edgeano.export.pipeline import run_export
    from edgeano.loaders import open_engine, resolve_model
    from edgeano.train import run_training

    if isinstance(img_size, bool) or not isinstance(img_size, int) or not MIN_SIZE <= img_size <= MAX_SIZE:
        raise EdgeanoError(f"--img-size {img_size}: the demo trains at {MIN_SIZE}..{MAX_SIZE} px (default 224)")
    t0 = time.time()
    out_dir = Path(out)
    data = demo_dataset(out_dir, seed)
    ds = load_dataset(data, need_test=True)

    report.info("[2/5] training the Gaussian model (EfficientNet-Lite0 features, ImageNet weights bundled)")
    run_training("gaussian", data=str(data), backbone="efficientnet-lite0", weights=None, img_size=img_size, epochs=None,
                 batch=None, lr=None, device="cpu", resume=False, out=str(out_dir), name=None, seed=seed)
    ckpt = resolve_model("gaussian", runs=str(out_dir))
    run_dir = ckpt.parent.parent

    report.info("[3/5] evaluating with PyTorch")
    with open_engine(str(ckpt)) as eng:
        r_torch = evaluate(eng, ds)
        b_torch = bench(eng, iters=30, warmup=3)

    report.info("[4/5] exporting to ONNX and checking it against PyTorch")
    onnx_path = run_export(str(ckpt), 17, False, None, False, False, str(data), 0, "minmax", str(out_dir), build=False)["fp32"]

    report.info("[5/5] evaluating with ONNX Runtime (no torch on this path)")
    with open_engine(str(onnx_path), backend="onnxruntime") as eng:  # the "ONNX Runtime" figures, even where TensorRT is present
        r_onnx = evaluate(eng, ds)
        b_onnx = bench(eng, iters=30, warmup=3)
    plots = write_plots(r_onnx, run_dir, stem="demo_onnx")

    summary = {
        "data": str(data), "checkpoint": str(ckpt), "onnx": str(onnx_path),
        "pytorch": public(r_torch), "onnxruntime": public(r_onnx),
        "latency_ms": {"pytorch": b_torch["infer_ms"]["mean"], "onnxruntime": b_onnx["infer_ms"]["mean"]},
        "plots": [str(p) for p in plots], "seconds": round(time.time() - t0, 1),
    }
    write_json(run_dir / "demo_summary.json", summary)
    return summary
