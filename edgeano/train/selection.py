"""Which epoch's weights become `best.pt`, chosen without test labels.

MVTec-layout data has labelled defects only in test/, the set the reported figures are measured
on; picking the epoch by test AUROC selects on those labels and inflates the figure. The trainer
asks `make_selector()` instead, and nothing else decides, so a better label-free criterion (the
synthetic-defect validation on held-out good images, issue 14) is a change here only.

Today: the last epoch. The trainer's epoch counts are set per model so that its last epoch is a
stable model on a CPU budget (docs/benchmarks/models.md measures how far that is from the
test-picked epoch).
"""

from __future__ import annotations

from typing import Dict, Optional


class LastEpoch:
    """Every epoch replaces the previous one: best.pt is the last epoch's weights."""

    method = "last epoch"

    def __init__(self, state: Optional[Dict] = None):
        self.state = dict(state or {"epoch": 0})

    def update(self, epoch: int, net=None, held=None) -> bool:
        """True when `epoch`'s weights should become best.pt."""
        self.state["epoch"] = int(epoch)
        return True

    def describe(self) -> Dict:
        return {"method": self.method, **self.state}


def make_selector(state: Optional[Dict] = None) -> LastEpoch:
    """The selector the trainer uses; `state` is what `.state` held when the run was saved (resume)."""
    return LastEpoch(state)
