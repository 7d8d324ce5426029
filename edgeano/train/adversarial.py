"""One adversarial training step for GANomaly and Skip-GANomaly, as in Akçay et al.'s reference code.

GANomaly      G: 1·‖f(x) − f(x̂)‖² (feature matching on D's penultimate layer) + 50·|x − x̂| + 1·‖z − ẑ‖²
Skip-GANomaly G: 1·BCE(D(x̂), real) + 50·|x − x̂| + 1·‖f(x) − f(x̂)‖²
D (both):     BCE(D(x), real) + BCE(D(x̂), fake), averaged; Skip-GANomaly's D also minimises the
              latent term, as its reference does. When D's BCE collapses below 1e-5 it has won
              outright and gives G no gradient, so D is re-initialised (reference `reinit_d`).
Norms are means over elements (nn.MSELoss / nn.L1Loss), like the reference.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from edgeano.models.dcgan import Discriminator, weights_init
from edgeano.models.skip_ganomaly import SkipGANomaly

W_ADV, W_CON, W_ENC, W_LAT = 1.0, 50.0, 1.0, 1.0
D_COLLAPSE = 1e-5
BETAS = (0.5, 0.999)


def make_discriminator(model: nn.Module) -> Discriminator:
    """GANomaly: a separate DCGAN discriminator. Skip-GANomaly: its feature stack IS the model's
    `features` (shared parameters), so scoring uses what the discriminator learned."""
    c, h, _ = model.preprocess.input_shape
    shared = model.features if isinstance(model, SkipGANomaly) else None
    disc = Discriminator(h, c, model.width, features=shared)
    if shared is None:
        disc.apply(weights_init)
    else:
        disc.classifier.apply(weights_init)
    return disc


def generator_parameters(model: nn.Module):
    """What the generator optimiser updates: everything in GANomaly; only the U-Net in Skip-GANomaly
    (its `features` belong to the discriminator)."""
    return model.generator.parameters() if isinstance(model, SkipGANomaly) else model.parameters()


def maybe_reinit(disc: Discriminator, loss_d: float, threshold: float = D_COLLAPSE) -> bool:
    """Re-initialise D when its loss has collapsed; True when it did."""
    if loss_d < threshold:
        disc.apply(weights_init)
        return True
    return False


def ganomaly_step(model: nn.Module, hp: Dict) -> "AdversarialStep":
    """The training step `edgeano.train.loop` builds for GANomaly and Skip-GANomaly."""
    disc = make_discriminator(model).to(next(model.parameters()).device)
    return AdversarialStep(model, disc, hp["lr"])


class AdversarialStep:
    """Holds both optimisers; `__call__(x in [0,1])` runs one G step then one D step and returns the losses."""

    def __init__(self, model: nn.Module, disc: Discriminator, lr: float):
        self.model, self.disc = model, disc
        self.skip = isinstance(model, SkipGANomaly)
        self.opt_g = torch.optim.Adam(generator_parameters(model), lr=lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=BETAS)

    def begin_epoch(self, epoch: int) -> str:
        self.model.train(), self.disc.train()
        return "adversarial"

    def __call__(self, x: torch.Tensor) -> Dict[str, float]:
        xn = self.model.normalize(x)
        losses = self._generator_step(xn)
        losses.update(self._discriminator_step(xn, self._x_hat))
        return losses

    def _generator_step(self, xn: torch.Tensor) -> Dict[str, float]:
        self.opt_g.zero_grad(set_to_none=True)
        if self.skip:
            x_hat = self.model.generator(xn)
            p_fake, f_fake = self.disc(x_hat)
            _, f_real = self.disc(xn)
            adv = F.binary_cross_entropy_with_logits(p_fake, torch.ones_like(p_fake))
            third = F.mse_loss(f_fake, f_real.detach())
            w3, key = W_LAT, "lat"
        else:
            x_hat, z, z_hat = self.model.generate(xn)
            _, f_fake = self.disc(x_hat)
            _, f_real = self.disc(xn)
            adv = F.mse_loss(f_fake, f_real.detach())
            third = F.mse_loss(z_hat, z)
            w3, key = W_ENC, "enc"
        con = F.l1_loss(x_hat, xn)
        loss = W_ADV * adv + W_CON * con + w3 * third
        loss.backward()
        self.opt_g.step()
        self._x_hat = x_hat.detach()
        return {"g": loss.item(), "adv": adv.item(), "con": con.item(), key: third.item()}

    def _discriminator_step(self, xn: torch.Tensor, x_hat: torch.Tensor) -> Dict[str, float]:
        self.opt_d.zero_grad(set_to_none=True)  # also drops the grads G's step left in D
        p_real, f_real = self.disc(xn)
        p_fake, f_fake = self.disc(x_hat)
        bce = 0.5 * (F.binary_cross_entropy_with_logits(p_real, torch.ones_like(p_real))
                     + F.binary_cross_entropy_with_logits(p_fake, torch.zeros_like(p_fake)))
        loss = bce + W_LAT * F.mse_loss(f_fake, f_real) if self.skip else bce
        loss.backward()
        self.opt_d.step()
        reinit = maybe_reinit(self.disc, bce.item())
        return {"d": loss.item(), "d_reinit": float(reinit)}

    def state_dict(self) -> Dict:
        return {"discriminator": self.disc.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.disc.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
