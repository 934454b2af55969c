"""ViT (Dosovitskiy et al. 2021) and ViT with a convolutional stem (Xiao et
al. 2021, "Early Convolutions Help Transformers See Better", arXiv:2106.14881).

``vit_base_r50_s16`` is Dosovitskiy et al.'s R50+ViT-B/16 hybrid: a
ResNet-50 (BiT's GroupNorm + weight-standardised convs) with stage 4 removed
and stage 3 at 9 blocks, whose 1/16 map is projected by a 1x1 conv to the
ViT-B width and fed to ViT-B as 14 x 14 tokens.

Xiao et al.'s ViT_C replaces the 16x16 patchify stem with stacked 3x3
stride-2 conv-BN-ReLU layers and a final 1x1 conv, and removes one
transformer block to keep the compute equal."""
import dataclasses

from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def vit_body(depth, width, heads, mlp_ratio=4.0, grid=14):
    return StageSpec("transformer", depth=depth, width=width, stride=1, heads=heads,
                     head_dim=width // heads, mlp_ratio=mlp_ratio, attention="global",
                     window=grid, pos_embed=True, cls_token=True)


def vit(patch, depth, width, heads, mlp_ratio=4.0, resolution=224):
    return ArchSpec(
        stem=StemSpec(kind="patchify", widths=(width,), kernel=patch, norm="none", bias=True),
        stages=(vit_body(depth, width, heads, mlp_ratio, resolution // patch),),
        head=HeadSpec(pool="cls", norm="ln"),
    )


def vit_conv_stem(stem_widths, depth, width, heads, mlp_ratio=3.0, resolution=224):
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=tuple(stem_widths), kernel=3, norm="bn", act="relu",
                      proj=width),
        stages=(vit_body(depth, width, heads, mlp_ratio, resolution // 2 ** len(stem_widths)),),
        head=HeadSpec(pool="cls", norm="ln"),
    )


def vit_resnet(depths, widths, depth, width, heads, mlp_ratio=4.0, norm="gn", resolution=224):
    """ResNet bottleneck stages (the first entered through the stem's 3x3
    max pool) on a 7x7 stride-2 conv stem, then a ViT body on the last map."""
    res = tuple(StageSpec("resnet", depth=d, width=w, stride=2, norm=norm,
                          **(dict(downsample="max_pool") if i == 0 else {}))
                for i, (d, w) in enumerate(zip(depths, widths)))
    grid = resolution // 2 ** (len(depths) + 1)
    body = dataclasses.replace(vit_body(depth, width, heads, mlp_ratio, grid), downsample="conv",
                               down_kernel=1, down_norm="none")
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(64,), kernel=7, norm=norm, act="relu"),
        stages=res + (body,),
        head=HeadSpec(pool="cls", norm="ln"),
    )


register("vit_base_patch16", vit(16, 12, 768, 12), params_m=86.6, gmacs=17.5,
         paper="arXiv:2010.11929",
         counted=(86_567_656, 17_594_838_288))
register("vit_c_1gf", vit_conv_stem((24, 48, 96, 192), 11, 192, 3), params_m=4.6, gmacs=1.1,
         paper="arXiv:2106.14881",
         counted=(4_567_936, 1_083_679_545))
register("vit_c_4gf", vit_conv_stem((48, 96, 192, 384), 11, 384, 6), params_m=17.8, gmacs=4.0,
         paper="arXiv:2106.14881",
         counted=(17_754_136, 3_974_579_826))
register("vit_base_r50_s16", vit_resnet((3, 4, 9), (256, 512, 1024), 12, 768, 12),
         params_m=98.0, paper="arXiv:2010.11929", counted=(98_659_112, 21_670_738_960))
