"""Builder: an ``ArchSpec`` in, an ``nn.Module`` out.

    >>> from hybridnas import create_model
    >>> model = create_model("coatnet_0", num_classes=10)
    >>> model.feature_info[-1]
    {'num_chs': 768, 'reduction': 32, 'module': 'stages.3'}

Every model has the same surface: ``forward_features`` (stem + stages),
``forward_head`` (pool, norm, classifier), ``forward``, ``feature_info`` and
``reset_classifier``. Models run at any input size the strides allow.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Stage, build_stem
from .blocks.base import link
from .blocks.layers import Linear, cpu_maps, make_act, trunc_normal_init
from .spec import ArchSpec

__all__ = ["HybridNet", "build_model"]


class HybridNet(nn.Module):
    #: Let channels-last stages hand maps to each other as they are
    #: (``blocks.base.link``); subclasses that reshape between stages opt out.
    link_stages = True

    def __init__(self, spec: ArchSpec, num_classes: int = 1000, in_chans: int = 3,
                 drop_path_rate: float = 0.0):
        super().__init__()
        spec.validate()
        self.spec = spec
        self.in_chans = in_chans
        dims = spec.dims
        self.stem = build_stem(spec.stem, in_chans, dims)
        channels = spec.stem.out_channels or in_chans
        total = sum(s.depth for s in spec.stages)
        # On the CPU even under torch.device("meta"): the spaces count parameters that way.
        rates = torch.linspace(0, drop_path_rate, max(total, 1), device="cpu").tolist() if total else []
        stages, self.feature_info = [], []
        reduction, k = spec.stem.reduction, 0
        for i, stage in enumerate(spec.stages):
            stages.append(Stage(stage, channels, rates[k:k + stage.depth], dims))
            k += stage.depth
            channels = stage.width
            reduction *= stage.stride
            self.feature_info.append({"num_chs": channels, "reduction": reduction,
                                      "module": f"stages.{i}"})
        if self.link_stages:
            link(stages)
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        head = spec.head
        if head.norm == "ln":
            self.head_norm: nn.Module = nn.LayerNorm(channels, eps=1e-6)
        elif head.norm == "bn":
            self.head_norm = nn.BatchNorm1d(channels)
        else:
            self.head_norm = nn.Identity()
        if head.hidden:
            self.pre_logits = nn.Sequential(Linear(channels, head.hidden), make_act(head.hidden_act))
            self.head_features = head.hidden
        else:
            self.pre_logits = nn.Identity()
            self.head_features = channels
        self.head_drop = nn.Dropout(head.dropout)
        self.num_classes = head.outputs or num_classes
        self.reset_classifier(self.num_classes)
        trunc_normal_init(self.stages)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        make = (lambda: Linear(self.head_features, num_classes)) if num_classes else nn.Identity
        self.fc = make()
        self.fc_dist = make() if self.spec.head.distillation else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # CPU maps channels-last from the input on (``blocks.layers.cpu_maps``),
        # except into a patchify stem: oneDNN runs a kernel = stride conv over
        # the image channels faster channels-first (ViT-B/16's 16x16: 1.1-1.6x).
        # A first stage that makes tokens copies the map once in either layout.
        if self.spec.stem.kind != "patchify":
            x = cpu_maps(x)
        x = self.stem(x)
        if not (len(self.stages) and self.stages[0].use_tokens):
            x = cpu_maps(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pool = self.spec.head.pool
        if x.ndim == 3 and self.spec.stages[-1].cls_token:  # tokens (B, 1 + N, C)
            x = x[:, 0] if pool == "cls" else x[:, 1:].mean(1)
        elif pool != "none":
            x = x.mean(dim=tuple(range(2, x.ndim)))
        x = self.head_drop(self.pre_logits(self.head_norm(x)))
        if pre_logits:
            return x
        if self.fc_dist is not None:
            return (self.fc(x) + self.fc_dist(x)) / 2
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(spec: ArchSpec, num_classes: int = 1000, in_chans: int = 3,
                drop_path_rate: float = 0.0) -> HybridNet:
    """Build the network a spec describes (validating it first)."""
    if spec.assets:  # multi-asset panels: a plug-in (hybridnas.temporal) folds the asset axis
        from .plugins import network_for

        return network_for("assets")(spec, num_classes=num_classes, in_chans=in_chans,
                        drop_path_rate=drop_path_rate)
    return HybridNet(spec, num_classes=num_classes, in_chans=in_chans,
                     drop_path_rate=drop_path_rate)
