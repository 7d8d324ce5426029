"""CPU latency/throughput of exported GANomaly and Skip-GANomaly graphs (ONNX Runtime, dynamic batch,
batch 1 and 8), FP32 and FP16, for given sizes/widths. Weights do not change the cost, so the
models are freshly initialised (no training needed). Prints JSON.

    nice -n 10 .venv/bin/python benchmarks/latency_ganomaly.py --configs 128:64,64:32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtd_ganomaly import latency  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ganomaly,skip-ganomaly")
    ap.add_argument("--configs", default="128:64,64:32", help="comma list of IMG_SIZE:WIDTH")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--seconds", type=float, default=5.0, help="timing window per batch size")
    ap.add_argument("--no-fp16", action="store_true")
    a = ap.parse_args(argv)

    import torch

    from edgeano.export.fp16 import to_fp16
    from edgeano.export.onnx_export import export_onnx
    from edgeano.models.checkpoint import checkpoint_metadata
    from edgeano.models.ganomaly import gan_preprocess
    from edgeano.models.registry import create

    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            for cfg in a.configs.split(","):
                size, width = (int(v) for v in cfg.split(":"))
                model = create(name, gan_preprocess(size, a.channels), width=width).eval()
                meta = checkpoint_metadata(model, {"meta": {"threshold": {"value": 1.0, "method": "untrained"}}})
                src = export_onnx(model, Path(tmp) / f"{name}-{size}-{width}.onnx", meta, dynamic_batch=True)
                row = {"model": name, "img_size": size, "width": width, "channels": a.channels, "threads": a.threads,
                       "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                       "onnx_mb": round(src.stat().st_size / 2**20, 2), "fp32": latency(src, a.threads, seconds=a.seconds)}
                if not a.no_fp16:
                    dst = to_fp16(src, Path(tmp) / f"{name}-{size}-{width}.fp16.onnx")["path"]
                    row["fp16"] = latency(Path(dst), a.threads, seconds=a.seconds)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    print(json.dumps(rows, indent=2))
    return {"rows": rows}


if __name__ == "__main__":
    main()
