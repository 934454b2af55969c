"""Swin Transformer (Liu et al. 2021, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", arXiv:2103.14030): 4x4 patch embedding
with LayerNorm, four stages of (shifted) window attention with window 7 and
head dim 32, patch merging between stages.

Difference from the paper: Swin applies its final LayerNorm to the tokens
before averaging them; here the LayerNorm follows the average (same size)."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def swin(depths, widths, window=7, head_dim=32, mlp_ratio=4.0):
    return ArchSpec(
        stem=StemSpec(kind="patchify", widths=(widths[0],), kernel=4, norm="ln", bias=True),
        stages=tuple(StageSpec("swin", depth=d, width=w, stride=1 if i == 0 else 2,
                               head_dim=head_dim, window=window, mlp_ratio=mlp_ratio)
                     for i, (d, w) in enumerate(zip(depths, widths))),
        head=HeadSpec(pool="avg", norm="ln"),
    )


register("swin_tiny", swin((2, 2, 6, 2), (96, 192, 384, 768)), params_m=28.3, gmacs=4.5,
         paper="arXiv:2103.14030", counted=(28_288_354, 4_516_919_952))
