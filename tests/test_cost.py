"""MAC counting: attention through SDPA counts the same as written out."""
import torch
import torch.nn.functional as F
from torch import nn

import hybridnas
from hybridnas.complexity import count_macs


class ManualAttention(nn.Module):
    def __init__(self, dim=32, heads=4, sdpa=True):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.heads, self.sdpa = heads, sdpa

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
            out = attn.softmax(-1) @ v
        return out.transpose(1, 2).reshape(b, n, c)


def test_sdpa_and_matmul_attention_count_the_same():
    x = torch.randn(2, 10, 32)
    sdpa, _ = count_macs(ManualAttention(sdpa=True), x)
    manual, _ = count_macs(ManualAttention(sdpa=False), x)
    linear = 2 * 10 * 32 * 96
    attention = 2 * 4 * (10 * 10 * 8 * 2 + 10 * 10)  # QK^T + AV + softmax
    assert sdpa == manual == linear + attention


import pytest


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_fused_path_counts_like_the_unfused_one(activation):
    """In eval + no_grad, nn.TransformerEncoderLayer runs one fused kernel that
    fvcore alone does not see at all."""
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, norm_first=True,
                                       activation=activation).eval()
    x = torch.randn(1, 16, 64)
    with torch.enable_grad():
        unfused, _ = count_macs(layer, x)
    with torch.no_grad():
        fused, _ = count_macs(layer, x)
    projections = 16 * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 128)
    attention = 2 * 16 * 16 * 64 + 16 * 16 * 4
    assert fused == unfused
    assert fused >= projections + attention


def test_cost_of_spec_and_per_stage_breakdown():
    c = hybridnas.cost("vit_c_1gf", 224, per_stage=True)
    assert c.params == sum(v["params"] for v in c.by_module.values())
    assert abs(sum(v["macs"] for v in c.by_module.values()) - c.macs) <= 0.01 * c.macs
    assert set(c.by_module) >= {"stem", "stages.0"}
