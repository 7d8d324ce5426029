"""Training steps for AnoGAN (+ f-AnoGAN's izi_f encoder) and EGBAD (BiGAN).

AnoGAN, two phases (Schlegl et al. 2017, 2019):
  1. "gan"      epochs [0, second_phase_from): a DCGAN on normal images, z ~ N(0, I):
                D: BCE(D(x), real) + BCE(D(G(z)), fake);  G: BCE(D(G(z)), real) (non-saturating)
  2. "encoder"  the rest: G and D frozen (eval mode), E trained on izi_f:
                mean (x − G(E(x)))² + κ · mean (f_D(x) − f_D(G(E(x))))²
EGBAD (Zenati et al. 2018; BiGAN, Donahue et al. 2017), one phase, z ~ N(0, I):
  D:     BCE(D(x, E(x)), real) + BCE(D(G(z), z), fake)
  G, E:  BCE(D(x, E(x)), fake) + BCE(D(G(z), z), real)   (the labels swapped: E and G fool D together)
Adam(lr, betas 0.5, 0.999) throughout, as in DCGAN. D's "real" target is 0.9, not 1 (one-sided
label smoothing, Salimans et al. 2016): with a few hundred training images D otherwise wins within
a few epochs (MTD, 32 px: D loss 0.03 by epoch 5) and G stops learning.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from edgeano.models.anogan import AnoGAN
from edgeano.models.egbad import EGBAD
from edgeano.train.adversarial import BETAS


REAL_TARGET = 0.9  # D's target for real pairs (one-sided label smoothing); G and E aim at 1


def _bce(logits: torch.Tensor, real: bool, target: float = 1.0) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target if real else 0.0))


def _noise(model, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(n, model.nz, 1, 1, device=like.device)


class AnoGANStep:
    def __init__(self, model: AnoGAN, lr: float, second_phase_from: int):
        self.model, self.second_phase_from = model, int(second_phase_from)
        self.opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=BETAS)
        self.opt_e = torch.optim.Adam(model.encoder.parameters(), lr=lr, betas=BETAS)
        self.phase = "gan"

    def begin_epoch(self, epoch: int) -> str:
        m = self.model
        self.phase = "gan" if epoch < self.second_phase_from else "encoder"
        m.train()
        if self.phase == "encoder":  # G and D as they will run in the exported graph
            m.generator.eval(), m.discriminator.eval()
        return self.phase

    def __call__(self, x: torch.Tensor) -> Dict[str, float]:
        xn = self.model.normalize(x)
        return self._gan(xn) if self.phase == "gan" else self._encoder(xn)

    def _gan(self, xn: torch.Tensor) -> Dict[str, float]:
        m = self.model
        fake = m.generator(_noise(m, xn.shape[0], xn))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (_bce(m.discriminator(xn)[0], True, REAL_TARGET) + _bce(m.discriminator(fake.detach())[0], False))
        loss_d.backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g = _bce(m.discriminator(fake)[0], True)
        loss_g.backward()
        self.opt_g.step()
        return {"g": loss_g.item(), "d": loss_d.item()}

    def _encoder(self, xn: torch.Tensor) -> Dict[str, float]:
        self.opt_e.zero_grad(set_to_none=True)
        loss = self.model.izi_f(xn)[0].mean()
        loss.backward()
        self.opt_e.step()
        return {"izi_f": loss.item()}

    def state_dict(self) -> Dict:
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "opt_e": self.opt_e.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        for k in ("opt_g", "opt_d", "opt_e"):
            getattr(self, k).load_state_dict(state[k])


class BiGANStep:
    def __init__(self, model: EGBAD, lr: float):
        self.model = model
        params = list(model.encoder.parameters()) + list(model.generator.parameters())
        self.opt_ge = torch.optim.Adam(params, lr=lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=BETAS)

    def begin_epoch(self, epoch: int) -> str:
        self.model.train()
        return "bigan"

    def __call__(self, x: torch.Tensor) -> Dict[str, float]:
        m = self.model
        xn = m.normalize(x)
        z = _noise(m, xn.shape[0], xn)
        z_enc, x_gen = m.encoder(xn), m.generator(z)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (_bce(m.discriminator(xn, z_enc.detach())[0], True, REAL_TARGET)
                        + _bce(m.discriminator(x_gen.detach(), z)[0], False))
        loss_d.backward()
        self.opt_d.step()
        self.opt_ge.zero_grad(set_to_none=True)
        loss_ge = 0.5 * (_bce(m.discriminator(xn, z_enc)[0], False) + _bce(m.discriminator(x_gen, z)[0], True))
        loss_ge.backward()
        self.opt_ge.step()
        return {"ge": loss_ge.item(), "d": loss_d.item()}

    def state_dict(self) -> Dict:
        return {"opt_ge": self.opt_ge.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.opt_ge.load_state_dict(state["opt_ge"])
        self.opt_d.load_state_dict(state["opt_d"])


def anogan_step(model: AnoGAN, hp: Dict) -> AnoGANStep:
    return AnoGANStep(model, hp["lr"], hp["second_phase_from"])


def egbad_step(model: EGBAD, hp: Dict) -> BiGANStep:
    return BiGANStep(model, hp["lr"])
