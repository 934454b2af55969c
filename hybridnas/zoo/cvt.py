"""CvT (Wu et al. 2021, "CvT: Introducing Convolutions to Vision
Transformers", arXiv:2103.15808): no stem; each of three stages starts with a
convolutional token embedding (k7 s4, then k3 s2, k3 s2) and runs
transformer blocks with depthwise-conv Q/K/V projections (K/V stride 2).

Difference from the paper: CvT classifies from a class token added in the
last stage; here the head averages the tokens instead (``HeadSpec(pool='avg')``),
so every stage is a plain grid and the block stays resolution-agnostic. The
class token is 384 parameters; the size matches the published one.
"""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def cvt(depths, widths, heads, kernels=(7, 3, 3), strides=(4, 2, 2)):
    stages = tuple(
        StageSpec("cvt", depth=d, width=w, stride=s, kernel=k, heads=h, head_dim=w // h,
                  kv_stride=2, mlp_ratio=4.0)
        for d, w, h, k, s in zip(depths, widths, heads, kernels, strides))
    return ArchSpec(stem=StemSpec(kind="none"), stages=stages,
                    head=HeadSpec(pool="avg", norm="ln"))


register("cvt_13", cvt((1, 2, 10), (64, 192, 384), (1, 3, 6)), params_m=20.0, gmacs=4.5,
         paper="arXiv:2103.15808",
         counted=(19_997_096, 4_573_921_264))
