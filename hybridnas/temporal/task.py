"""The ``returns`` task: forecast each asset's return over several horizons.

Outputs and targets are (N, assets, horizons). The loss is the mean squared
error; the search metric is the information coefficient (``val_ic``): for
each day, the rank correlation across assets between predicted and realised
returns, averaged over days and then over horizons. A constant prediction
(e.g. the zero-return baseline) ranks nothing and scores an IC of 0.
"""
from __future__ import annotations

from ..data.tasks import Task

__all__ = ["ReturnsTask", "information_coefficient"]


def _ranks(x):
    """Ranks along the last axis (0..n-1); ties broken by position."""
    return x.argsort(dim=-1).argsort(dim=-1).to(x.dtype)


def information_coefficient(outputs, targets):
    """Per-horizon IC: tensor (horizons,) from (N, assets, horizons) tensors.

    Spearman correlation across assets for each sample day, averaged over
    days; a day whose predictions (or targets) are all equal contributes 0.
    """
    import torch

    pred = outputs.double().transpose(1, 2)  # (N, H, A)
    real = targets.double().transpose(1, 2)
    spread_p = pred.std(dim=-1) > 0
    spread_r = real.std(dim=-1) > 0
    rp, rr = _ranks(pred), _ranks(real)
    rp = rp - rp.mean(-1, keepdim=True)
    rr = rr - rr.mean(-1, keepdim=True)
    corr = (rp * rr).sum(-1) / ((rp.pow(2).sum(-1) * rr.pow(2).sum(-1)).sqrt() + 1e-12)
    corr = torch.where(spread_p & spread_r, corr, torch.zeros_like(corr))
    return corr.mean(dim=0)


class ReturnsTask(Task):
    """Multi-horizon return forecasting (see the module docstring).

    ``horizons``: the forecast horizons in days, one output per horizon.
    ``metrics`` returns ``ic`` (mean over horizons), ``ic_<h>d`` per horizon,
    ``mse`` and ``loss`` (the same MSE), in the targets' units.
    """

    name = "returns"
    metric_name = "val_ic"
    maximize = True

    def __init__(self, horizons: tuple[int, ...] = (1, 5, 20)):
        self.horizons = tuple(int(h) for h in horizons)

    def loss(self, outputs, targets, label_smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.mse_loss(outputs.float(), targets.float())

    def metrics(self, outputs, targets) -> dict[str, float]:
        if len(targets) == 0:
            return {"ic": float("nan"), "mse": float("nan"), "loss": float("nan")}
        outputs = outputs.float().reshape(targets.shape)
        ic = information_coefficient(outputs, targets)
        mse = float((outputs - targets.float()).pow(2).mean())
        out = {"ic": float(ic.mean()), "mse": mse, "loss": mse}
        for h, value in zip(self.horizons, ic.tolist()):
            out[f"ic_{h}d"] = float(value)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReturnsTask) and other.horizons == self.horizons

    def __hash__(self) -> int:
        return hash(("returns", self.horizons))

    def __repr__(self) -> str:
        return f"ReturnsTask(horizons={self.horizons})"
