"""LeViT (Graham et al. 2021, "LeViT: a Vision Transformer in ConvNet's
Clothing for Faster Inference", arXiv:2104.01136): a four-conv stem (3x3
stride 2, BN, Hardswish between) to a 14x14 map at 224, three stages of
BN-linear attention blocks with learned attention biases, shrink attention
between stages, and a BatchNorm + distillation head."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def levit(widths, heads, depths, key_dim, resolution=224):
    stem_widths = tuple(widths[0] // d for d in (8, 4, 2, 1))
    grid = resolution // 16
    stages = []
    for i, (w, h, d) in enumerate(zip(widths, heads, depths)):
        stride = 1 if i == 0 else 2
        grid = -(-grid // stride)
        stages.append(StageSpec("levit", depth=d, width=w, stride=stride, heads=h,
                                key_dim=key_dim, value_ratio=2.0, mlp_ratio=2.0, window=grid))
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=stem_widths, kernel=3, norm="bn", act="hardswish",
                      last_act=False),
        stages=tuple(stages),
        head=HeadSpec(pool="avg", norm="bn", distillation=True),
    )


register("levit_128s", levit((128, 256, 384), (4, 6, 8), (2, 3, 4), key_dim=16),
         params_m=7.8, gmacs=0.305, paper="arXiv:2104.01136",
         counted=(7_776_530, 308_436_754))
register("levit_256", levit((256, 384, 512), (4, 6, 8), (4, 4, 4), key_dim=32),
         params_m=18.9, gmacs=1.12, paper="arXiv:2104.01136",
         counted=(18_893_032, 1_135_935_992))
