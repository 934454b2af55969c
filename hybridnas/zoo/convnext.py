"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s", arXiv:2201.03545)."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def convnext(depths, widths, kernel=7):
    return ArchSpec(
        stem=StemSpec(kind="patchify", widths=(widths[0],), kernel=4, norm="ln", bias=True),
        stages=tuple(StageSpec("convnext", depth=d, width=w, stride=1 if i == 0 else 2, kernel=kernel)
                     for i, (d, w) in enumerate(zip(depths, widths))),
        head=HeadSpec(pool="avg", norm="ln"),
    )


register("convnext_tiny", convnext((3, 3, 9, 3), (96, 192, 384, 768)), params_m=28.6, gmacs=4.5,
         paper="arXiv:2201.03545",
         counted=(28_589_128, 4_478_979_840))
