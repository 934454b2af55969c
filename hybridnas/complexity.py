"""Parameter and MAC counting with fvcore, plus the op handles fvcore lacks.

fvcore counts convolutions and matrix products (one unit per multiply-add)
but silently drops ``scaled_dot_product_attention``, softmax and activations,
and misses ``nn.TransformerEncoderLayer``'s fused inference kernel entirely.
The handles below count

- scaled_dot_product_attention: Q@K^T + softmax + A@V (so SDPA and a
  hand-written matmul/softmax/matmul attention count the same),
- softmax, GELU, SiLU, sigmoid, Hardswish, tanh: one unit per output element,
- the fused ``_transformer_encoder_layer_fwd`` and
  ``_native_multi_head_attention`` kernels: their projections and attention.

    >>> from hybridnas import cost
    >>> c = cost("convnext_tiny")            # 224x224, 1000 classes
    >>> round(c.params / 1e6, 1), round(c.gmacs, 1)
    (28.6, 4.5)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .spec import ArchSpec

__all__ = ["Cost", "cost", "count_macs", "MAC_HANDLES"]


@dataclass
class Cost:
    params: int
    macs: int
    input_size: tuple[int, ...]
    by_module: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def _shape(value: Any) -> list[int] | None:
    t = value.type()
    try:
        sizes = t.sizes()
    except Exception:
        return None
    return list(sizes) if sizes is not None else None


def _numel_out(inputs, outputs) -> int:
    shape = _shape(outputs[0])
    return math.prod(shape) if shape else 0


def _sdpa(inputs, outputs) -> int:
    q, k, v = (_shape(x) for x in inputs[:3])
    *batch, n, d = q
    m = k[-2]
    dv = v[-1]
    b = math.prod(batch)
    return b * n * m * d + b * n * m * dv + b * n * m  # QK^T, A V, softmax


def _fused_encoder_layer(inputs, outputs) -> int:
    # aten::_transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_weight, qkv_bias,
    #   proj_weight, proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
    #   norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2, mask)
    src = _shape(inputs[0])
    *batch, n, d = src
    tokens = math.prod(batch) * n
    ffn = _shape(inputs[14])[0]
    heads = inputs[2].toIValue()
    use_gelu = bool(inputs[7].toIValue())
    attn = math.prod(batch) * (2 * n * n * d + n * n * heads)
    # Same conventions as the unfused path: fvcore counts 5 per element of a
    # LayerNorm, and GELU (not ReLU) is counted one per element.
    norms = 2 * 5 * tokens * d
    return tokens * (3 * d * d + d * d + 2 * d * ffn) + attn + norms + (tokens * ffn if use_gelu else 0)


def _native_mha(inputs, outputs) -> int:
    # aten::_native_multi_head_attention(query, key, value, embed_dim, num_head, qkv_weight,
    #   qkv_bias, proj_weight, proj_bias, ...)
    q, k = _shape(inputs[0]), _shape(inputs[1])
    *batch, n, d = q
    m = k[-2]
    b = math.prod(batch)
    heads = inputs[4].toIValue()
    return b * (n * d * d + 2 * m * d * d) + b * (2 * n * m * d + n * m * heads) + b * n * d * d


MAC_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa,
    "aten::_transformer_encoder_layer_fwd": _fused_encoder_layer,
    "aten::_native_multi_head_attention": _native_mha,
    "aten::softmax": _numel_out,
    "aten::_softmax": _numel_out,
    "aten::gelu": _numel_out,
    "aten::silu": _numel_out,
    "aten::sigmoid": _numel_out,
    "aten::hardswish": _numel_out,
    "aten::tanh": _numel_out,
}


def count_macs(model: nn.Module, example: torch.Tensor | tuple) -> tuple[int, dict[str, int]]:
    """Total MACs of one forward pass and MACs per module (fvcore + handles)."""
    from fvcore.nn import FlopCountAnalysis

    inputs = example if isinstance(example, tuple) else (example,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, inputs)
        for name, handle in MAC_HANDLES.items():
            analysis.set_op_handle(name, handle)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        total = int(analysis.total())
        by_module = {k: int(v) for k, v in analysis.by_module().items()}
    return total, by_module


def cost(model_or_spec: nn.Module | ArchSpec | str, input_size: int | tuple = 224,
         num_classes: int = 1000, in_chans: int | None = None, batch_size: int = 1,
         per_stage: bool = False) -> Cost:
    """Parameters and MACs of a model, spec or named architecture.

    ``input_size`` is a resolution (square image, or sequence length for 1-D
    specs) or a full per-sample shape such as ``(3, 224, 224)``. MACs are for
    ``batch_size`` samples in eval mode. With ``per_stage``, ``by_module`` holds
    params and MACs for ``stem``, ``stages.i`` and the head.
    """
    from .builder import build_model
    from .zoo import get_spec

    if isinstance(model_or_spec, str):
        model_or_spec = get_spec(model_or_spec)
    if isinstance(model_or_spec, ArchSpec):
        model = build_model(model_or_spec, num_classes=num_classes, in_chans=in_chans or 3)
    else:
        model = model_or_spec
    dims = getattr(getattr(model, "spec", None), "dims", 2)
    if isinstance(input_size, int):
        chans = in_chans or getattr(model, "in_chans", 3)
        shape = (chans, input_size) if dims == 1 else (chans, input_size, input_size)
    else:
        shape = tuple(input_size)
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        example = torch.zeros((batch_size,) + shape, device=device)
        # Grad mode keeps nn.TransformerEncoderLayer off its fused kernel where
        # possible; the handles above count the fused kernel when it is taken.
        with torch.enable_grad():
            macs, by_module = count_macs(model, example)
    finally:
        model.train(was_training)
    stages = {}
    if per_stage:
        for name, module in model.named_children():
            if name == "stages":
                for i, sub in enumerate(module):
                    key = f"stages.{i}"
                    stages[key] = {"params": sum(p.numel() for p in sub.parameters()),
                                   "macs": by_module.get(key, 0)}
            else:
                stages[name] = {"params": sum(p.numel() for p in module.parameters()),
                                "macs": by_module.get(name, 0)}
    return Cost(params=params, macs=macs, input_size=shape, by_module=stages)


def count_size(name: str) -> tuple[int, int]:
    """A fresh fvcore count of (params, MACs) of a named architecture at its
    registered resolution and number of classes (builds the model; imports torch)."""
    from .zoo import get_named

    named = get_named(name)
    c = cost(named.spec, named.resolution, num_classes=named.num_classes)
    return c.params, c.macs
