"""EfficientFormer (Li et al. 2022, "EfficientFormer: Vision Transformers at
MobileNet Speed", arXiv:2206.01191): a stem of two 3x3 stride-2 conv-BN-ReLU,
four stages of Meta4D blocks (pooling mixer, conv MLP), the last stage
ending in Meta3D attention blocks, and a distillation head.

Difference from the paper: its head applies LayerNorm to the tokens before
averaging them; here the LayerNorm follows the average (same size)."""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register


def efficientformer(depths, widths, attn_blocks=1, resolution=224):
    stages = []
    grid = resolution // 4
    for i, (d, w) in enumerate(zip(depths, widths)):
        stride = 1 if i == 0 else 2
        grid = -(-grid // stride)
        last = i == len(depths) - 1
        stages.append(StageSpec("efficientformer", depth=d, width=w, stride=stride,
                                mlp_ratio=4.0, layer_scale=1e-5,
                                attn_blocks=attn_blocks if last else 0, heads=8, key_dim=32,
                                value_ratio=4.0, window=grid))
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(widths[0] // 2, widths[0]), kernel=3, norm="bn",
                      act="relu", bias=True),
        stages=tuple(stages),
        head=HeadSpec(pool="avg", norm="ln", distillation=True),
    )


register("efficientformer_l1", efficientformer((3, 2, 6, 4), (48, 96, 224, 448)),
         params_m=12.3, gmacs=1.3, paper="arXiv:2206.01191",
         counted=(12_289_928, 1_305_838_408))
