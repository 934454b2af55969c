"""CoAtNet (Dai et al. 2021, "CoAtNet: Marrying Convolution and Attention for
All Data Sizes", arXiv:2106.04803): S0 two-conv stem, MBConv S1-S2, relative
attention transformer S3-S4 (the C-C-T-T layout)."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def coatnet(depths, widths, stem_width=64, head_dim=32, block_types=("C", "C", "T", "T"),
            resolution=224):
    stages = []
    grid = resolution // 2
    for d, w, t in zip(depths, widths, block_types):
        grid //= 2
        if t == "C":
            stages.append(StageSpec("mbconv", depth=d, width=w, stride=2, kernel=3, expansion=4.0,
                                    se_ratio=0.25))
        else:
            stages.append(StageSpec("transformer", depth=d, width=w, stride=2, head_dim=head_dim,
                                    attention="rel", window=max(grid, 1)))
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(stem_width, stem_width), strides=(2, 1), norm="bn",
                      act="gelu", last_norm=False, last_act=False),
        stages=tuple(stages),
        head=HeadSpec(pool="avg", norm="ln"),
    )


register("coatnet_0", coatnet((2, 3, 5, 2), (96, 192, 384, 768)), params_m=25.0, gmacs=4.2,
         paper="arXiv:2106.04803",
         counted=(25_220_948, 4_603_372_784))
