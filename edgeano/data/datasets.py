"""Dataset layouts: MVTec AD (`train/good`, `test/<class>`, `ground_truth/<class>`) and a plain
folder of good images (training only). Paths only; decoding happens where images are used."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edgeano.data.images import list_images, sample_frames
from edgeano.errors import EdgeanoError

GOOD = "good"


@dataclass
class TestItem:
    path: Path
    label: int  # 0 normal, 1 anomalous
    defect: str  # "good" or the defect class folder name
    mask: Optional[Path] = None


@dataclass
class Dataset:
    root: Path
    layout: str  # "mvtec" or "folder"
    train: List[Path]
    test: List[TestItem] = field(default_factory=list)

    @property
    def has_anomalies(self) -> bool:
        return any(t.label == 1 for t in self.test)

    @property
    def n_normal(self) -> int:
        return sum(t.label == 0 for t in self.test)

    @property
    def n_anomalous(self) -> int:
        return sum(t.label == 1 for t in self.test)

    def classes(self) -> List[str]:
        return sorted({t.defect for t in self.test})

    def summary(self) -> str:
        s = f"{self.root} ({self.layout}): {len(self.train)} train images"
        if self.test:
            s += f", test {self.n_normal} good + {self.n_anomalous} anomalous in {len(self.classes()) - 1} classes"
        return s


def load_dataset(root, need_test: bool = False) -> Dataset:
    """Recognise the layout of `root`; raise EdgeanoError with one line when it holds no images."""
    root = Path(root)
    if not root.exists():
        raise EdgeanoError(f"data folder not found: {root}")
    if not root.is_dir():
        raise EdgeanoError(f"--data must be a folder, got a file: {root}")
    train_dir, test_dir = root / "train" / GOOD, root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        ds = Dataset(root, "mvtec", list_images(train_dir), _mvtec_test(root))
    else:
        ds = Dataset(root, "folder", list_images(root))
    if need_test and not ds.test:
        raise EdgeanoError(f"{root} has no test/ folder: evaluation needs the MVTec AD layout (test/good, test/<defect>)")
    if not ds.train and not ds.test:
        raise EdgeanoError(f"no images found in {root} (looked for train/good, test/<class> or images in the folder itself)")
    return ds


def _mvtec_test(root: Path) -> List[TestItem]:
    test_dir, gt_dir = root / "test", root / "ground_truth"
    items: List[TestItem] = []
    if not test_dir.is_dir():
        return items
    for cls_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        label = 0 if cls_dir.name == GOOD else 1
        for p in list_images(cls_dir):
            mask = None
            if label:
                cand = gt_dir / cls_dir.name / f"{p.stem}_mask.png"
                mask = cand if cand.exists() else None
            items.append(TestItem(p, label, cls_dir.name, mask))
    return items


def good_frames(root, n: int = 16) -> List[np.ndarray]:
    """Up to n decodable images of `root`, spread evenly: the training images, else the test ones."""
    ds = load_dataset(root)
    return sample_frames(ds.train or [t.path for t in ds.test], n)


def fingerprint(paths: List[Path]) -> str:
    """sha256 over the names and bytes of the training files: ties an artifact to its data."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(os.fsencode(p.name))  # the name's bytes as on disk: a non-UTF-8 name (caf\xe9.jpg) is no error
        h.update(p.read_bytes())
    return "sha256:" + h.hexdigest()


def class_counts(items: List[TestItem]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for t in items:
        out[t.defect] = out.get(t.defect, 0) + 1
    return out
