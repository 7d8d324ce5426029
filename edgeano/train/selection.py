"""Which epoch's weights become `best.pt`, chosen without test labels.

MVTec-layout data has labelled defects only in test/, the set the reported figures are measured
on; picking the epoch by test AUROC selects on those labels and inflates the figure. The trainer
asks this module instead, and nothing else decides:

    best.pt = the epoch with the highest image AUROC on synthetic defects made from the held-out
              good images (edgeano.evaluation.synthetic: pasted patches, scratches, blobs, spots
              with known masks), among the epochs of the model's last training phase.

The held-out images are the tenth of train/good the trainer never trains on (they also set the
thresholds). The synthetic set is made once per run (deterministic for the seed), scored every
epoch; its image and pixel AUROC are also the run's label-free estimate of detection quality
(meta["synthetic"], metrics.csv). Ties go to the later epoch.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeano.evaluation.synthetic import resize_mask, synthesize, synthetic_metrics

SYNTHETIC_SEED = 0


class SyntheticSelector:
    method = "highest synthetic-defect image AUROC on held-out good images"

    def __init__(self, state: Optional[Dict] = None):
        self.state = dict(state or {"epoch": 0, "value": float("-inf")})

    def update(self, epoch: int, value: Optional[float], eligible: bool = True) -> bool:
        """True when `epoch` (scoring `value` on the synthetic set) should become best.pt."""
        v = float("-inf") if value is None or math.isnan(value) else float(value)
        if not eligible or v < self.state["value"]:
            return False
        self.state = {"epoch": int(epoch), "value": v}
        return True

    def describe(self) -> Dict:
        return {"method": self.method, **self.state}


def make_selector(state: Optional[Dict] = None) -> SyntheticSelector:
    """The selector the trainer uses; `state` is what `.state` held when the run was saved (resume)."""
    return SyntheticSelector(state)


def synthetic_set(held: Sequence[np.ndarray], preprocess, seed: int = SYNTHETIC_SEED) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Defective copies of the held-out good BGR images: (network input (N, C, H, W), masks at the
    network's resolution (N, H, W) uint8, defect kinds)."""
    syn = synthesize(list(held), seed)
    masks = np.stack([resize_mask(m, preprocess.size) for m in syn.masks])
    return preprocess.batch(syn.images), masks, list(syn.kinds)


def synthetic_estimate(good_scores, good_maps, defect_scores, defect_maps, masks, kinds) -> Dict:
    """synthetic_metrics, rounded for the checkpoint and metrics.csv."""
    res = synthetic_metrics(good_scores, defect_scores, kinds, good_maps, defect_maps, masks)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
