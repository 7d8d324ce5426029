"""Training steps for the reconstruction models: AE, VAE, Residual VAE and OE-SDN.

AE / VAE / RVAE, one phase, Adam(lr, betas 0.9, 0.999):
  loss = mean over the batch of  Σ_pixels map(x, x̂)  [+ β · KL(q(z|x) ‖ N(0, I)) for the VAEs]
  map is the model's own anomaly map (mean_c (x − x̂)² or 1 − SSIM), so training minimises what
  scoring measures; the VAEs decode a sample z = μ + σ·ε (reparameterised), scoring decodes μ.
  Residual VAE: the gradient norm is clipped to `clip` (deep residual AEs explode early on); the
  step reports the norm before clipping ("gnorm").
OE-SDN, two phases (Chung et al. 2020):
  1. "ae"   epochs [0, second_phase_from): the AE alone, mean (x − AE(x))²
  2. "sdn"  the rest: the AE frozen (eval mode); the SDN learns
            mean (SDN(x) − AE(x))² + λ · mean (SDN(x_oe) − x_oe)²,  λ = 0.5,
            x_oe = each training image rotated by 90, 180 or 270 degrees (drawn per image)
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from edgeano.models.ae import ReconstructionModel
from edgeano.models.oe_sdn import OESDN
from edgeano.models.vae import VariationalModel, kl_divergence

AE_BETAS = (0.9, 0.999)


class ReconstructionStep:
    def __init__(self, model: ReconstructionModel, lr: float, clip: Optional[float] = None):
        self.model, self.clip = model, clip
        self.variational = isinstance(model, VariationalModel)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=AE_BETAS)

    def begin_epoch(self, epoch: int) -> str:
        self.model.train()
        return "reconstruction"

    def __call__(self, x: torch.Tensor) -> Dict[str, float]:
        m = self.model
        xn = m.normalize(x)
        if self.variational:
            mu, logvar = m.encode(xn)
            x_hat, kl = m.decoder(m.sample(mu, logvar)), kl_divergence(mu, logvar)
        else:
            x_hat, kl = m.reconstruct(xn), torch.zeros(xn.shape[0], device=xn.device)
        rec = m.residual_map(xn, x_hat).flatten(1).sum(1)
        beta = m.beta if self.variational else 0.0
        loss = (rec + beta * kl).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        out = {"loss": loss.item(), "rec": rec.mean().item() / xn[0, 0].numel()}
        if self.variational:
            out["kl"] = kl.mean().item()
        if self.clip is not None:
            out["gnorm"] = float(torch.nn.utils.clip_grad_norm_(m.parameters(), self.clip))
        self.opt.step()
        return out

    def state_dict(self) -> Dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.opt.load_state_dict(state["opt"])


def rotate_outliers(xn: torch.Tensor) -> torch.Tensor:
    """Each image turned by 90, 180 or 270 degrees (one draw per image): OE-SDN's outlier exposure."""
    k = torch.randint(1, 4, (xn.shape[0],), device=xn.device).view(-1, 1, 1, 1)
    out = torch.rot90(xn, 1, (2, 3))
    out = torch.where(k == 2, torch.rot90(xn, 2, (2, 3)), out)
    return torch.where(k == 3, torch.rot90(xn, 3, (2, 3)), out)


class OESDNStep:
    def __init__(self, model: OESDN, lr: float, second_phase_from: int):
        self.model, self.second_phase_from = model, int(second_phase_from)
        self.opt_ae = torch.optim.Adam(model.ae.parameters(), lr=lr, betas=AE_BETAS)
        self.opt_sdn = torch.optim.Adam(model.sdn.parameters(), lr=lr, betas=AE_BETAS)
        self.phase = "ae"

    def begin_epoch(self, epoch: int) -> str:
        self.phase = "ae" if epoch < self.second_phase_from else "sdn"
        self.model.train()
        if self.phase == "sdn":
            self.model.ae.eval()  # the teacher, as it runs in the exported graph
        return self.phase

    def __call__(self, x: torch.Tensor) -> Dict[str, float]:
        m = self.model
        xn = m.normalize(x)
        if self.phase == "ae":
            loss = F.mse_loss(m.ae(xn), xn)
            self.opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_ae.step()
            return {"ae": loss.item()}
        with torch.no_grad():
            target = m.ae(xn)
        x_oe = rotate_outliers(xn)
        distill = F.mse_loss(m.sdn(xn), target)
        expose = F.mse_loss(m.sdn(x_oe), x_oe)
        loss = distill + m.lam * expose
        self.opt_sdn.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_sdn.step()
        return {"sdn": loss.item(), "distill": distill.item(), "oe": expose.item()}

    def state_dict(self) -> Dict:
        return {"opt_ae": self.opt_ae.state_dict(), "opt_sdn": self.opt_sdn.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.opt_ae.load_state_dict(state["opt_ae"])
        self.opt_sdn.load_state_dict(state["opt_sdn"])


def reconstruction_step(model: ReconstructionModel, hp: Dict) -> ReconstructionStep:
    return ReconstructionStep(model, hp["lr"], hp.get("clip"))


def oe_sdn_step(model: OESDN, hp: Dict) -> OESDNStep:
    return OESDNStep(model, hp["lr"], hp["second_phase_from"])
