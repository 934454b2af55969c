"""Multi-asset temporal architectures (``assets=True`` specs, see hybridnas.temporal):
input (B, features, assets, time), output (B, assets, horizons).

- ``financial_hybrid``: the design document's FinancialHybrid ("Quantitative
  Finance Applications"): per-asset temporal convs -- 5-tap conv to 64, then
  5-tap stride-5 convs to 128 and 128, each conv-BN-GELU with conv bias --
  average pooling over time, a 4-layer pre-norm transformer across assets
  (8 heads, MLP 4x, ReLU), LayerNorm and a per-asset linear head. Built with
  ``num_classes=1`` and ``in_chans=n_features`` it has exactly the parameter
  count of the seed's module (``hybridnas.temporal.SeedFinancialHybrid``);
  the seed's dropout 0.1 is a training setting and not part of the spec.
"""
from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from . import register

FINANCIAL_HYBRID = ArchSpec(
    stem=StemSpec(kind="conv", widths=(64, 128, 128), strides=(1, 5, 5), kernel=5, norm="bn",
                  act="gelu", bias=True),
    stages=(StageSpec("transformer", depth=4, width=128, stride=1, heads=8, mlp_ratio=4.0,
                      attention="global", act="relu", axis="assets"),),
    head=HeadSpec(pool="avg", norm="ln"),
    dims=1,
    assets=True,
)

register("financial_hybrid", FINANCIAL_HYBRID, resolution=60, num_classes=1, in_chans=6,
         note="seed FinancialHybrid (multi-asset, input (B, features, assets, time))",
         counted=(918_273, 1_605_536))
