"""The three patterns of the design document (shared/seed) as named specs.

- ``hybrid_vit`` (Pattern 1): the seed's ``HybridViT`` -- four 3x3 stride-2
  conv-BN(-ReLU) layers to 768 channels, class token, learned position
  embedding, 12 pre-norm transformer layers with 12 heads, MLP 4x.
- ``coatnet_style`` (Pattern 2): the seed's ``CoAtNetStyle`` -- two conv
  stages (3x3 conv-BN-GELU, 64 then 128 channels, each stride 2), then
  transformer stages of 6 x 256 and 2 x 512 channels with global attention
  and 64-channel heads, each entered through a 3x3 stride-2 conv + BN
  (``downsample='conv'``). Same parameters as the seed's module; the one
  difference is LayerNorm's eps (1e-6 here, PyTorch's 1e-5 in the seed).
- ``interleaved_s`` (Pattern 3): a four-stage stack of the seed's
  ``ConvTransformerBlock`` (depthwise 7x7 over the token grid, global
  attention, FFN) behind a two-conv stem.
"""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register
from .vit import vit_body

register(
    "hybrid_vit",
    ArchSpec(
        stem=StemSpec(kind="conv", widths=(64, 128, 256, 768), kernel=3, norm="bn", act="relu",
                      last_act=False),
        stages=(vit_body(12, 768, 12, 4.0, 14),),
        head=HeadSpec(pool="cls", norm="ln"),
    ),
    note="seed Pattern 1 (HybridViT)",
    counted=(88_119_336, 18_313_258_256),
)

register(
    "coatnet_style",
    ArchSpec(
        stem=StemSpec(kind="conv", widths=(64, 64, 128, 128), strides=(2, 1, 2, 1), norm="bn",
                      act="gelu"),
        stages=(
            StageSpec("transformer", depth=6, width=256, stride=2, head_dim=64, attention="global",
                      downsample="conv", down_kernel=3, down_norm="bn"),
            StageSpec("transformer", depth=2, width=512, stride=2, head_dim=64, attention="global",
                      downsample="conv", down_kernel=3, down_norm="bn"),
        ),
        head=HeadSpec(pool="avg", norm="none"),
    ),
    note="seed Pattern 2 (CoAtNetStyle)",
    counted=(13_292_968, 8_582_928_640),
)

register(
    "interleaved_s",
    ArchSpec(
        stem=StemSpec(kind="conv", widths=(32, 64), norm="bn", act="gelu"),
        stages=(
            StageSpec("interleaved", depth=2, width=64, stride=1, kernel=7, head_dim=32),
            StageSpec("interleaved", depth=2, width=128, stride=2, kernel=7, head_dim=32),
            StageSpec("interleaved", depth=6, width=256, stride=2, kernel=7, head_dim=32),
            StageSpec("interleaved", depth=2, width=512, stride=2, kernel=7, head_dim=32),
        ),
        head=HeadSpec(pool="avg", norm="ln"),
    ),
    note="seed Pattern 3 (ConvTransformerBlock stack)",
    counted=(13_877_768, 5_219_886_368),
)
