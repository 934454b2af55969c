"""MaxViT (Tu et al. 2022, "MaxViT: Multi-Axis Vision Transformer",
arXiv:2204.01697): a two-conv stem, then four stages of MaxViT blocks (MBConv,
block attention, grid attention; window 7, head dim 32), and a head with a
pre-logits layer (LayerNorm, Linear + tanh)."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def maxvit(depths, widths, stem_width=64, window=7, head_dim=32, head_hidden=None):
    stages = tuple(
        StageSpec("maxvit", depth=d, width=w, stride=2, kernel=3, expansion=4.0, se_ratio=0.25,
                  head_dim=head_dim, window=window)
        for d, w in zip(depths, widths))
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(stem_width, stem_width), strides=(2, 1), norm="bn",
                      act="gelu", last_norm=False, last_act=False, bias=True),
        stages=stages,
        head=HeadSpec(pool="avg", norm="ln", hidden=head_hidden or widths[-1], hidden_act="tanh"),
    )


register("maxvit_tiny", maxvit((2, 2, 5, 2), (64, 128, 256, 512)), params_m=30.9, gmacs=5.6,
         paper="arXiv:2204.01697",
         counted=(30_916_528, 5_614_264_608))
