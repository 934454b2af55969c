"""Multi-asset models: a ``HybridNet`` that folds the asset axis around its stages.

A spec with ``assets=True`` describes a network over a panel of daily series,
input (B, features, assets, time), output (B, assets, outputs). The panel is
channels-first like an image (features as channels, assets x time as the
map), so code that sizes inputs as ``(in_chans, *resolution)`` -- cost
counting, latency, export -- handles it with ``in_chans=features`` and
``resolution=(assets, time)``:

- the stem and every stage whose attention axis is ``'time'`` (and every
  convolution stage) run on each asset's series, the assets folded into the
  batch: (B * assets, features, time), exactly as the seed's FinancialHybrid
  runs its ``temporal_conv``;
- a transformer stage with ``axis='both'`` attends over all (asset, day)
  tokens of a sample at once;
- a transformer stage with ``axis='assets'`` first averages each asset's
  features over time (once), then attends across the assets;
- the head averages over time (if still there), then LayerNorm / Linear per
  asset: one output per forecast horizon.

``hybridnas.build_model`` returns a ``PanelNet`` for such specs, so cost
counting, export and training see an ordinary module.

``SeedFinancialHybrid`` is the design document's module verbatim (kept as the
baseline "as written in the seed"); ``financial_hybrid`` in the zoo is the
same network in the architecture language, with the same parameter count.
"""
from __future__ import annotations

import torch
from torch import nn

from ..builder import HybridNet

__all__ = ["PanelNet", "SeedFinancialHybrid"]


class PanelNet(HybridNet):
    """``HybridNet`` for ``assets=True`` specs; see the module docstring.

    ``in_chans`` is the number of features per asset and day; ``num_classes``
    the number of outputs per asset (horizons) unless ``head.outputs`` fixes it.
    """

    link_stages = False  # forward_features reshapes channels-first maps between stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, features, assets, time) -> (B, assets, channels, time'); time' is
        1 once an ``axis='assets'`` stage has pooled time away. A single series
        (B, features, time) is taken as a panel of one asset."""
        if x.ndim == 3:
            x = x.unsqueeze(2)
        if x.ndim != 4:
            raise ValueError(f"a multi-asset model takes (batch, features, assets, time), "
                             f"got shape {tuple(x.shape)}")
        b, f, a, t = x.shape
        h = self.stem(x.transpose(1, 2).reshape(b * a, f, t))  # (B*A, C, T)
        pooled = False
        for stage, spec in zip(self.stages, self.spec.stages):
            axis = spec.axis or "time"
            if axis == "time":
                h = stage(h)
            elif axis == "both":
                c, length = h.shape[1], h.shape[2]
                tokens = h.view(b, a, c, length).permute(0, 2, 1, 3).reshape(b, c, a * length)
                h = stage(tokens)
                h = h.view(b, -1, a, length).permute(0, 2, 1, 3).reshape(b * a, -1, length)
            else:  # "assets": the assets become the sequence the stage attends over
                if not pooled:
                    h = h.mean(-1).view(b, a, -1).transpose(1, 2)  # (B, C, A)
                    pooled = True
                h = stage(h)
        if pooled:
            return h.transpose(1, 2).unsqueeze(-1)  # (B, A, C, 1)
        return h.view(b, a, h.shape[1], h.shape[2])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, assets, channels, time') -> (B, assets, outputs)."""
        b, a, c = x.shape[:3]
        x = x.mean(-1).reshape(b * a, c)
        x = self.head_drop(self.pre_logits(self.head_norm(x)))
        if not pre_logits:
            x = self.fc(x) if self.fc_dist is None else (self.fc(x) + self.fc_dist(x)) / 2
        return x.view(b, a, -1)


class SeedFinancialHybrid(nn.Module):
    """The design document's FinancialHybrid, as written there (including its
    dropout-0.1 ``nn.TransformerEncoderLayer`` with ReLU), with one change:
    ``horizons`` outputs per asset instead of one, so it is trained on the same
    multi-horizon targets as searched models. Input (B, assets, time, features)
    as in the seed (``panel_first=True`` takes the channels-first panel
    (B, features, assets, time) that datasets and ``PanelNet`` use);
    output (B, assets, horizons)."""

    def __init__(self, n_features: int, n_assets: int, seq_len: int, embed_dim: int = 128,
                 num_heads: int = 8, horizons: int = 1, panel_first: bool = False):
        super().__init__()
        self.panel_first = panel_first
        self.temporal_conv = nn.Sequential(
            nn.Conv1d(n_features, 64, kernel_size=5, padding=2),
            nn.BatchNorm1d(64),
            nn.GELU(),
            nn.Conv1d(64, 128, kernel_size=5, stride=5, padding=2),
            nn.BatchNorm1d(128),
            nn.GELU(),
            nn.Conv1d(128, embed_dim, kernel_size=5, stride=5, padding=2),
            nn.BatchNorm1d(embed_dim),
            nn.GELU(),
        )
        self.cross_attention = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads,
                                       dim_feedforward=4 * embed_dim, batch_first=True,
                                       norm_first=True),
            num_layers=4, enable_nested_tensor=False,
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, horizons)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.panel_first:
            x = x.permute(0, 2, 3, 1)
        b, a, t, f = x.shape
        x = x.reshape(b * a, t, f).transpose(1, 2)
        x = self.temporal_conv(x).mean(dim=-1)
        x = self.cross_attention(x.view(b, a, -1))
        return self.head(self.norm(x))
