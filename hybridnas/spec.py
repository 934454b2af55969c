"""Architecture specs: pure, frozen data describing a network (stem, stages, head).

This module must not import torch (a test checks it): specs are what search
spaces produce, what run tables store and what export writes, so they have to
be cheap to create, hash and serialise.

A spec is canonical by construction: every block parameter that the stage's
block accepts is filled with its default when left as ``None``, so two specs
that describe the same network compare equal and share one ``arch_id``.

    >>> from hybridnas.spec import ArchSpec, StemSpec, StageSpec
    >>> spec = ArchSpec(stem=StemSpec(kind="patchify", widths=(96,), kernel=4),
    ...                 stages=(StageSpec("convnext", depth=3, width=96, stride=1),))
    >>> spec.validate()
    >>> ArchSpec.from_yaml(spec.to_yaml()) == spec
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import reprlib
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ._io import parse_json, parse_yaml, read_text
from .errors import SpecError

__all__ = [
    "ArchSpec",
    "StemSpec",
    "StageSpec",
    "HeadSpec",
    "BlockSchema",
    "BLOCK_SCHEMAS",
    "SpecError",
    "SpecLimits",
    "SPEC_LIMITS",
    "check_input_size",
    "short_repr",
    "stage_letter",
]




@dataclass(frozen=True)
class SpecLimits:
    """Sane upper bounds, checked before anything is built or allocated: a
    spec from an untrusted file cannot ask for terabytes. They sit well above
    every published architecture (ViT-G: width 1664, depth 48, 1.8B params)."""

    max_name_chars: int = 200
    max_stages: int = 32
    max_depth: int = 1024
    max_width: int = 32768
    max_stem_convs: int = 16
    max_kernel: int = 63
    max_stride: int = 64
    max_heads: int = 1024
    #: head_dim, key_dim, window, kv_stride and other per-block sizes
    max_size: int = 4096
    #: expansion, mlp_ratio, value_ratio
    max_ratio: float = 64.0
    max_outputs: int = 1_000_000
    #: input side of a 2-D image
    max_resolution: int = 8192
    #: time steps of a 1-D series (and assets of a panel)
    max_sequence: int = 1 << 20
    #: rough parameter estimate of the whole network (weights * 4 bytes = 16 GB)
    max_params: float = 4e9


SPEC_LIMITS = SpecLimits()


# --------------------------------------------------------------------------
# Block schemas: which parameters each block type accepts, and their defaults.
# The torch implementations live in hybridnas.blocks under the same keys; a
# test checks that the two registries agree.
# --------------------------------------------------------------------------

#: Stage fields that are block parameters (everything but block/depth/width/stride).
BLOCK_PARAM_FIELDS = (
    "kernel", "expansion", "se_ratio", "heads", "head_dim", "mlp_ratio",
    "attention", "window", "key_dim", "value_ratio", "layer_scale", "norm",
    "act", "kv_stride", "attn_blocks", "pos_embed", "cls_token",
)

ATTENTION_KINDS = ("global", "window", "grid", "rel", "conv", "bias")
#: Attention axes of stages in multi-asset (``assets=True``) specs.
AXES = ("time", "assets", "both")
AXIS_BLOCKS = ("transformer",)
NORMS = ("bn", "ln", "none")
#: Norms of convolution-only layers (ResNet blocks, stems): "gn" is GroupNorm
#: with weight-standardised convs (BiT / the R50+ViT hybrid).
CONV_NORMS = NORMS + ("gn",)
#: Stage-start downsamplers a stage may name instead of its block's own
#: ("block", the default, is written as None so existing specs keep their
#: arch_id), with the defaults of the parameters that apply to each.
DOWNSAMPLERS: dict[str, dict[str, Any]] = {
    "conv": {"down_kernel": 3, "down_norm": "bn"},    # kxk strided conv + norm (the seed)
    "pool_proj": {},                                  # avg pool + 1x1 conv (CoAtNet)
    "patch_merge": {"down_norm": "ln"},               # Swin: s x s patches -> norm -> linear
    "max_pool": {"down_kernel": 3},                   # kxk max pool (ResNet), width unchanged
}
DOWNSAMPLE_KINDS = ("block",) + tuple(DOWNSAMPLERS)
ACTS = ("gelu", "relu", "silu", "hardswish", "tanh", "identity")


@dataclass(frozen=True)
class BlockSchema:
    """What a block type accepts.

    ``letter`` is used in stage patterns such as ``C-C-T-T``: ``C`` for pure
    convolution, ``T`` for attention, ``I`` for blocks that interleave both.
    ``attention`` says whether the block uses heads (so heads/head_dim apply).
    """

    letter: str
    dims: tuple[int, ...]
    params: Mapping[str, Any]
    attention: bool = False
    attention_kinds: tuple[str, ...] = ()
    doc: str = ""


BLOCK_SCHEMAS: dict[str, BlockSchema] = {
    "mbconv": BlockSchema(
        "C", (1, 2),
        {"kernel": 3, "expansion": 4.0, "se_ratio": 0.25, "norm": "bn", "act": "gelu"},
        doc="Inverted bottleneck: pre-BN, 1x1 expand, depthwise kxk (strided when "
            "downsampling), squeeze-excitation, 1x1 project (CoAtNet/EfficientNet).",
    ),
    "convnext": BlockSchema(
        "C", (1, 2),
        {"kernel": 7, "expansion": 4.0, "layer_scale": 1e-6, "norm": "ln", "act": "gelu"},
        doc="Depthwise kxk, LayerNorm, inverted-bottleneck MLP, layer scale; "
            "stride-2 stages start with LayerNorm + 2x2 stride-2 conv.",
    ),
    "interleaved": BlockSchema(
        "I", (1, 2),
        {"kernel": 7, "heads": None, "head_dim": 32, "mlp_ratio": 4.0, "attention": "global",
         "window": 7, "norm": "ln", "act": "gelu", "layer_scale": 0.0},
        attention=True, attention_kinds=("global", "rel", "window"),
        doc="Depthwise conv over the token grid, then self-attention, then FFN; "
            "each pre-norm with a residual.",
    ),
    "transformer": BlockSchema(
        "T", (1, 2),
        {"heads": None, "head_dim": 32, "mlp_ratio": 4.0, "attention": "rel", "window": 7,
         "norm": "ln", "act": "gelu", "layer_scale": 0.0, "pos_embed": False,
         "cls_token": False},
        attention=True, attention_kinds=("global", "rel"),
        doc="Pre-norm attention + MLP. attention='rel' adds CoAtNet's relative position "
            "bias (table sized by window, resized to any grid); stride-2 stages pool.",
    ),
    "maxvit": BlockSchema(
        "I", (2,),
        {"kernel": 3, "expansion": 4.0, "se_ratio": 0.25, "heads": None, "head_dim": 32,
         "mlp_ratio": 4.0, "window": 7, "norm": "ln", "act": "gelu", "layer_scale": 0.0},
        attention=True, attention_kinds=(),
        doc="MBConv (BN; carries the stride; SE hidden width = width * se_ratio as in "
            "MaxViT), then block (window) attention + FFN, then grid attention + FFN, "
            "with relative position bias; window is both the block and the grid size.",
    ),
    "cvt": BlockSchema(
        "T", (2,),
        {"kernel": 3, "heads": None, "head_dim": 64, "mlp_ratio": 4.0, "kv_stride": 2,
         "norm": "ln", "act": "gelu", "attention": "conv"},
        attention=True, attention_kinds=("conv",),
        doc="Every stage starts with a convolutional token embedding (kernel x kernel "
            "conv with the stage stride + LayerNorm); blocks use attention whose Q/K/V "
            "projections are depthwise 3x3 conv + BN (K/V strided by kv_stride).",
    ),
    "levit": BlockSchema(
        "T", (2,),
        {"heads": None, "key_dim": 16, "value_ratio": 2.0, "mlp_ratio": 2.0, "window": 14,
         "act": "hardswish", "attention": "bias"},
        attention=True, attention_kinds=("bias",),
        doc="LeViT: BN-linear attention with a learned attention bias (table sized by "
            "window) and Hardswish, BN-linear MLP; stride-2 stages start with "
            "shrink attention + MLP.",
    ),
    "efficientformer": BlockSchema(
        "C", (2,),
        {"kernel": 3, "mlp_ratio": 4.0, "layer_scale": 1e-5, "attn_blocks": 0, "heads": 8,
         "key_dim": 32, "value_ratio": 4.0, "window": 7, "act": "gelu", "attention": "bias"},
        attention=True, attention_kinds=("bias",),
        doc="Meta4D blocks (pool mixer + conv MLP); the last attn_blocks blocks are "
            "Meta3D (attention with learned bias + MLP). Stride-2 stages start with a "
            "3x3 stride-2 conv + BN.",
    ),
    "resnet": BlockSchema(
        "C", (1, 2),
        {"kernel": 3, "expansion": 4.0, "norm": "bn", "act": "relu"},
        doc="ResNet bottleneck: 1x1 conv to width / expansion, kxk conv (strided), 1x1 conv "
            "to width, each with a norm (the last without act), projection shortcut (1x1 "
            "conv + norm) when the stride or width changes. norm='gn' is GroupNorm(32) with "
            "weight-standardised convs (BiT, the R50+ViT hybrid).",
    ),
    "swin": BlockSchema(
        "T", (2,),
        {"heads": None, "head_dim": 32, "mlp_ratio": 4.0, "window": 7, "norm": "ln",
         "act": "gelu", "layer_scale": 0.0, "attention": "window"},
        attention=True, attention_kinds=("window",),
        doc="Swin: pre-norm window attention with relative position bias + MLP; every "
            "second block shifts the windows by window // 2 (masked). Windows shrink to "
            "maps smaller than the window; larger maps are padded and the padding masked.",
    ),
}


def stage_letter(stage: "StageSpec") -> str:
    """One letter for a stage in a pattern such as ``C-C-T-T``."""
    schema = BLOCK_SCHEMAS.get(stage.block)
    if schema is None:
        return "?"
    if stage.block == "efficientformer":
        return "T" if (stage.attn_blocks or 0) >= stage.depth else ("I" if stage.attn_blocks else "C")
    return schema.letter


# --------------------------------------------------------------------------
# Spec dataclasses
# --------------------------------------------------------------------------

STEM_KINDS = ("patchify", "conv", "none")


@dataclass(frozen=True)
class StemSpec:
    """The stem: turns the input into the first feature map.

    kind='patchify': one ``kernel x kernel`` conv with stride ``kernel`` to
        ``widths[0]``, then ``norm`` (ViT: none, ConvNeXt: ln).
    kind='conv': stacked ``kernel x kernel`` convs, one per entry of ``widths``
        with the matching ``strides`` (default 2 each), each followed by
        ``norm`` and ``act``; ``last_norm``/``last_act`` switch those off on the
        last conv; ``proj`` > 0 adds a final 1x1 conv (with bias) to that many
        channels. This covers Xiao et al.'s ViT_C stem, CoAtNet's S0, MaxViT's
        and EfficientFormer's stems and LeViT's four-conv stem.
    kind='none': identity (the first stage embeds the input itself, as in CvT).
    """

    kind: str = "conv"
    widths: tuple[int, ...] = (64,)
    kernel: int = 3
    strides: tuple[int, ...] | None = None
    norm: str = "bn"
    act: str = "gelu"
    last_norm: bool = True
    last_act: bool = True
    proj: int = 0
    bias: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in _as_tuple(self.widths)))
        if self.strides is None:
            strides = (self.kernel,) if self.kind == "patchify" else (2,) * len(self.widths)
        else:
            strides = tuple(int(s) for s in _as_tuple(self.strides))
        object.__setattr__(self, "strides", strides)

    @property
    def out_channels(self) -> int:
        if self.kind == "none":
            return 0
        return self.proj or self.widths[-1]

    @property
    def reduction(self) -> int:
        if self.kind == "none":
            return 1
        return math.prod(self.strides)


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` blocks of type ``block`` producing ``width`` channels.

    ``stride`` (1 or 2; 4+ only for cvt's convolutional embedding) downsamples
    at the start of the stage. Block parameters left as ``None`` take the
    block's defaults (see ``BLOCK_SCHEMAS``); parameters the block does not
    accept must stay ``None``.

    ``axis`` applies only to ``transformer`` stages of specs with
    ``assets=True`` (see ``ArchSpec``; other blocks run per asset over time):
    which axis of the (assets, time) panel the attention runs over --
    ``'time'`` within each asset, ``'both'`` over all (asset, day) tokens at once, or
    ``'assets'``: average over time first, then attend across assets (the
    seed's FinancialHybrid transition; time stays pooled from there on).

    ``downsample`` says how the stage starts when it downsamples or changes
    width: ``None``/``'block'`` (the block's own way, e.g. CoAtNet's pool +
    projection in ``transformer``), ``'conv'`` (``down_kernel`` x
    ``down_kernel`` strided conv + ``down_norm``; bias only without a norm),
    ``'pool_proj'`` (average pool + 1x1 conv), ``'patch_merge'`` (Swin: each
    stride x stride patch concatenated, ``down_norm``, linear without bias) or
    ``'max_pool'`` (``down_kernel`` max pool; the width is left to the
    blocks). The blocks then run at stride 1.
    """

    block: str
    depth: int
    width: int
    stride: int = 2
    kernel: int | None = None
    expansion: float | None = None
    se_ratio: float | None = None
    heads: int | None = None
    head_dim: int | None = None
    mlp_ratio: float | None = None
    attention: str | None = None
    window: int | None = None
    key_dim: int | None = None
    value_ratio: float | None = None
    layer_scale: float | None = None
    norm: str | None = None
    act: str | None = None
    kv_stride: int | None = None
    attn_blocks: int | None = None
    pos_embed: bool | None = None
    cls_token: bool | None = None
    axis: str | None = None
    downsample: str | None = None
    down_kernel: int | None = None
    down_norm: str | None = None

    def __post_init__(self) -> None:
        if self.downsample == "block":  # the default, written as None (arch_id unchanged)
            object.__setattr__(self, "downsample", None)
        for name, default in DOWNSAMPLERS.get(self.downsample or "", {}).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        schema = BLOCK_SCHEMAS.get(self.block)
        if schema is None:
            return  # validate() reports the unknown block with its position
        # heads and head_dim are two views of one choice: an explicit heads
        # wins over the block's default head_dim, and both end up filled.
        derive_head_dim = (schema.attention and "head_dim" in schema.params
                           and self.heads is not None and self.head_dim is None)
        if derive_head_dim:
            object.__setattr__(self, "head_dim", self.width // self.heads if self.heads else None)
        for name, default in schema.params.items():
            if getattr(self, name) is None and default is not None:
                object.__setattr__(self, name, default)
        if schema.attention and "head_dim" in schema.params and self.heads is None and self.head_dim:
            object.__setattr__(self, "heads", max(1, self.width // self.head_dim))
        for name in ("expansion", "se_ratio", "mlp_ratio", "value_ratio", "layer_scale"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    @property
    def letter(self) -> str:
        return stage_letter(self)

    def params(self) -> dict[str, Any]:
        """The block parameters that apply to this stage's block."""
        schema = BLOCK_SCHEMAS[self.block]
        return {k: getattr(self, k) for k in schema.params}


HEAD_POOLS = ("avg", "cls", "none")


@dataclass(frozen=True)
class HeadSpec:
    """Classifier head: pooling, optional norm, optional pre-logits layer.

    ``hidden`` > 0 adds Linear(hidden) + ``hidden_act`` before the classifier
    (MaxViT). ``distillation`` adds a second classifier averaged with the first
    at inference (LeViT, EfficientFormer). ``outputs`` > 0 fixes the output
    count in the spec (temporal heads: one output per horizon); otherwise the
    builder's ``num_classes`` is used.
    """

    pool: str = "avg"
    norm: str = "ln"
    hidden: int = 0
    hidden_act: str = "tanh"
    dropout: float = 0.0
    distillation: bool = False
    outputs: int = 0


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem, stages and head, for 2-D images or 1-D series.

    ``assets=True`` (1-D only) makes it a multi-asset model: the input is a
    panel (B, assets, time, features), the stem and stages run on each
    asset's series with the assets folded into the batch (attention stages
    may attend across assets instead, see ``StageSpec.axis``), and the head
    predicts ``outputs`` values (e.g. one per horizon) per asset, giving
    (B, assets, outputs). ``hybridnas.temporal`` builds and trains these.

    ``name`` is a label only: it is not part of equality or of ``arch_id``.
    """

    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    dims: int = 2
    name: str | None = field(default=None, compare=False)
    assets: bool = False

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if self.assets:
            # Canonical form: attention stages of a multi-asset spec name their axis.
            stages = tuple(dataclasses.replace(s, axis="time")
                           if s.block in AXIS_BLOCKS and s.axis is None else s for s in stages)
        object.__setattr__(self, "stages", stages)

    # ---- derived facts --------------------------------------------------
    @property
    def pattern(self) -> str:
        """Stage pattern such as ``C-C-T-T``."""
        return "-".join(s.letter for s in self.stages)

    @property
    def reduction(self) -> int:
        """Total downsampling factor of the network."""
        return self.stem.reduction * math.prod(s.stride for s in self.stages)

    def stage_resolutions(self, resolution: int | tuple[int, int]) -> list[tuple[int, int]]:
        """Feature-map size after each stage for an input of ``resolution``."""
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        for s in (self.stem.strides if self.stem.kind != "none" else ()):
            h, w = downsampled(h, s), downsampled(w, s)
        out = []
        for st in self.stages:
            h, w = downsampled(h, st.stride), downsampled(w, st.stride)
            out.append((h, w))
        return out

    @property
    def arch_id(self) -> str:
        """Stable short hash of the canonical spec (name excluded)."""
        payload = self.to_dict()
        payload.pop("name", None)
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    # ---- validation -----------------------------------------------------
    def limit_problems(self) -> list[str]:
        """Values over ``SPEC_LIMITS`` (cheap: nothing is built); ``problems``
        reports them first."""
        return _bound_problems(self)

    def validate(self, resolution: int | tuple[int, int] | None = None) -> "ArchSpec":
        """Raise ``SpecError`` naming the first bad field; return self if valid.

        With ``resolution``, also check that every stage gets a feature map of
        at least 1x1 and that window/grid attention fits.
        """
        errors = self.problems(resolution)
        if errors:
            raise SpecError(errors[0] if len(errors) == 1 else
                            f"{errors[0]} (and {len(errors) - 1} more: {'; '.join(errors[1:])})")
        return self

    def problems(self, resolution: int | tuple[int, int] | None = None) -> list[str]:
        """Every problem with this spec, as ``field=value reason`` strings."""
        errs = _bound_problems(self)
        if errs:  # checked first: nothing below may loop over or size a huge value
            return errs
        if self.dims not in (1, 2):
            errs.append(f"dims={self.dims!r} must be 1 or 2")
        if self.assets and self.dims != 1:
            errs.append(f"assets=true needs dims=1 (got dims={self.dims})")
        st = self.stem
        if st.kind not in STEM_KINDS:
            errs.append(f"stem.kind={st.kind!r} is not one of {list(STEM_KINDS)}")
        if st.kind != "none":
            if not st.widths or any(w <= 0 for w in st.widths):
                errs.append(f"stem.widths={list(st.widths)} must be positive channel counts")
            if len(st.strides) != len(st.widths):
                errs.append(f"stem.strides={list(st.strides)} must have one entry per width "
                            f"(widths={list(st.widths)})")
            if any(s < 1 for s in st.strides):
                errs.append(f"stem.strides={list(st.strides)} must be >= 1")
            if st.kind == "patchify" and len(st.widths) != 1:
                errs.append(f"stem.widths={list(st.widths)}: a patchify stem has one width")
            if st.kernel < 1:
                errs.append(f"stem.kernel={st.kernel} must be >= 1")
            if st.norm not in CONV_NORMS:
                errs.append(f"stem.norm={st.norm!r} is not one of {list(CONV_NORMS)}")
            if st.act not in ACTS:
                errs.append(f"stem.act={st.act!r} is not one of {list(ACTS)}")
            if st.proj < 0:
                errs.append(f"stem.proj={st.proj} must be >= 0")
        if not self.stages:
            errs.append("stages=[] must hold at least one stage")
        in_ch = self.stem.out_channels
        for i, s in enumerate(self.stages):
            errs.extend(_stage_problems(i, s, self.dims, last=i == len(self.stages) - 1))
            if (s.pos_embed or s.cls_token) and in_ch and in_ch != s.width and (
                    s.downsample in (None, "max_pool")):
                # Tokens and position embedding are added before the first block.
                errs.append(f"stages[{i}].width={s.width} must equal its input width {in_ch} "
                            f"when pos_embed/cls_token is set")
            if s.cls_token and s.stride != 1:
                errs.append(f"stages[{i}].stride={s.stride} must be 1 when cls_token is set")
            in_ch = s.width
        errs.extend(_axis_problems(self))
        if self.stem.kind == "none" and self.stages and self.stages[0].block != "cvt":
            errs.append(f"stem.kind='none' needs a first stage that embeds its input "
                        f"(block 'cvt'), not stages[0].block={self.stages[0].block!r}")
        h = self.head
        if h.pool not in HEAD_POOLS:
            errs.append(f"head.pool={h.pool!r} is not one of {list(HEAD_POOLS)}")
        if h.norm not in NORMS:
            errs.append(f"head.norm={h.norm!r} is not one of {list(NORMS)}")
        if h.hidden_act not in ACTS:
            errs.append(f"head.hidden_act={h.hidden_act!r} is not one of {list(ACTS)}")
        if h.hidden < 0 or h.outputs < 0:
            errs.append(f"head.hidden={h.hidden}/head.outputs={h.outputs} must be >= 0")
        if not 0.0 <= h.dropout < 1.0:
            errs.append(f"head.dropout={h.dropout} must be in [0, 1)")
        if h.pool == "cls" and not (self.stages and self.stages[-1].cls_token):
            errs.append("head.pool='cls' needs the last stage to have cls_token=true")
        if resolution is not None and not errs:
            errs.extend(self._resolution_problems(resolution))
        return errs

    def _resolution_problems(self, resolution: int | tuple[int, int]) -> list[str]:
        errs = []
        size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
            return [f"resolution={resolution!r} must be an integer or a pair of integers"]
        if min(size) < 1:
            return [f"resolution={resolution} must be positive"]
        try:
            check_input_size(resolution, self.dims)
        except SpecError as e:
            return [str(e)]
        if self.dims == 1:  # sequences and (assets, time) panels: only time is downsampled
            size = (size[-1], size[-1])
        h, w = size
        if self.stem.kind != "none":
            for j, s in enumerate(self.stem.strides):
                if h < s or w < s:
                    errs.append(f"stem.strides[{j}]={s} downsamples a {h}x{w} map below 1x1 "
                                f"at resolution {resolution}")
                    return errs
                h, w = downsampled(h, s), downsampled(w, s)
        for i, st in enumerate(self.stages):
            if st.stride > 1 and (h < st.stride or (self.dims == 2 and w < st.stride)):
                errs.append(f"stages[{i}].stride={st.stride} downsamples a {h}x{w} map below "
                            f"1x1 at resolution {resolution}")
                return errs
            h, w = downsampled(h, st.stride), downsampled(w, st.stride)
        return errs

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict; stage fields that are ``None`` are left out."""
        stem = dataclasses.asdict(self.stem)
        stem["widths"] = list(self.stem.widths)
        stem["strides"] = list(self.stem.strides)
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["dims"] = self.dims
        if self.assets:  # written only when set, so other specs keep their arch_id
            out["assets"] = True
        out["stem"] = stem
        out["stages"] = [
            {f.name: getattr(s, f.name) for f in fields(s) if getattr(s, f.name) is not None}
            for s in self.stages
        ]
        out["head"] = dataclasses.asdict(self.head)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> "ArchSpec":
        """Build from a dict (as written by ``to_dict``, or by hand in YAML).

        Unknown keys and wrong types raise ``SpecError`` naming the key path;
        ``source`` (e.g. a file name) prefixes the message.
        """
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: expected a mapping with stem/stages/head, "
                            f"got {type(data).__name__}")
        allowed = {"name", "dims", "assets", "stem", "stages", "head"}
        unknown = set(data) - allowed
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "stages" not in data:
            raise SpecError(f"{source}: missing key 'stages'")
        stem = _make(StemSpec, data.get("stem", {}), f"{source}: stem")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, (list, tuple)):
            raise SpecError(f"{source}: stages must be a list, got {type(raw_stages).__name__}")
        if len(raw_stages) > SPEC_LIMITS.max_stages:
            raise SpecError(f"{source}: stages has {len(raw_stages)} entries, over the limit of "
                            f"{SPEC_LIMITS.max_stages}")
        stages = tuple(_make(StageSpec, s, f"{source}: stages[{i}]") for i, s in enumerate(raw_stages))
        head = _make(HeadSpec, data.get("head", {}), f"{source}: head")
        dims = data.get("dims", 2)
        assets = data.get("assets", False)
        if not isinstance(assets, bool):
            raise SpecError(f"{source}: assets={assets!r} has the wrong type (expected bool)")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise SpecError(f"{source}: name={short_repr(name)} has the wrong type (expected str)")
        if name is not None and len(name) > SPEC_LIMITS.max_name_chars:
            raise SpecError(f"{source}: name is {len(name)} characters long, over the limit of "
                            f"{SPEC_LIMITS.max_name_chars}")
        return cls(stem=stem, stages=stages, head=head, dims=dims, name=name, assets=assets)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> "ArchSpec":
        return cls.from_dict(parse_json(text, source, SpecError), source)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str, source: str = "spec") -> "ArchSpec":
        data = parse_yaml(text, source, SpecError)
        if isinstance(data, Mapping) and "spec" in data and "stages" not in data:
            data = data["spec"]  # exported model folders wrap the spec
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str) -> "ArchSpec":
        """Read a spec from a ``.yaml``/``.yml``/``.json`` file."""
        import os

        if not os.path.exists(path):
            raise SpecError(f"{path}: no such spec file")
        text = read_text(path, SpecError)
        if path.endswith(".json"):
            return cls.from_json(text, source=path)
        return cls.from_yaml(text, source=path)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json(indent=2) if path.endswith(".json") else self.to_yaml())


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def check_input_size(resolution: int | tuple[int, ...], dims: int = 2,
                     where: str = "resolution", error: type[Exception] = SpecError) -> None:
    """Raise ``error`` unless every side of ``resolution`` is an integer
    in [1, limit]: ``SPEC_LIMITS.max_resolution`` for images (``dims=2``),
    ``max_sequence`` for series. Callers that resize or allocate inputs
    check with this first."""
    sizes = resolution if isinstance(resolution, (tuple, list)) else (resolution,)
    limit = SPEC_LIMITS.max_sequence if dims == 1 else SPEC_LIMITS.max_resolution
    for v in sizes:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise error(f"{where}={short_repr(resolution)} must be a positive integer")
        if v > limit:
            raise error(f"{where}={short_repr(resolution)} is over the limit of {limit}")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 6
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr`` cut to one short line: error messages echo untrusted values."""
    return _REPR.repr(value)


def _bound_problems(spec: "ArchSpec") -> list[str]:
    """Values over ``SPEC_LIMITS`` (and names of the wrong type), found before
    anything loops over, sizes or builds them."""
    lim = SPEC_LIMITS
    errs: list[str] = []

    def over(where: str, value: Any, limit: float) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            errs.append(f"{where}={value} is over the limit of {limit}")

    if spec.name is not None and not isinstance(spec.name, str):
        errs.append(f"name={short_repr(spec.name)} must be a string")
    elif spec.name is not None and len(spec.name) > lim.max_name_chars:
        errs.append(f"name is {len(spec.name)} characters long, over the limit of "
                    f"{lim.max_name_chars}")
    st = spec.stem
    for key in ("widths", "strides"):
        if len(getattr(st, key)) > lim.max_stem_convs:
            errs.append(f"stem.{key} has {len(getattr(st, key))} entries, over the limit of "
                        f"{lim.max_stem_convs}")
    for w in st.widths:
        over("stem.widths[]", w, lim.max_width)
    for s in st.strides:
        over("stem.strides[]", s, lim.max_stride)
    over("stem.kernel", st.kernel, lim.max_kernel)
    over("stem.proj", st.proj, lim.max_width)
    if len(spec.stages) > lim.max_stages:
        errs.append(f"stages has {len(spec.stages)} entries, over the limit of {lim.max_stages}")
        return errs
    for i, s in enumerate(spec.stages):
        p = f"stages[{i}]"
        over(f"{p}.depth", s.depth, lim.max_depth)
        over(f"{p}.width", s.width, lim.max_width)
        over(f"{p}.stride", s.stride, lim.max_stride)
        over(f"{p}.kernel", s.kernel, lim.max_kernel)
        over(f"{p}.heads", s.heads, lim.max_heads)
        for key in ("head_dim", "key_dim", "window", "kv_stride", "attn_blocks"):
            over(f"{p}.{key}", getattr(s, key), lim.max_size if key != "attn_blocks"
                 else lim.max_depth)
        for key in ("expansion", "mlp_ratio", "value_ratio", "se_ratio", "layer_scale"):
            value = getattr(s, key)
            if isinstance(value, float) and not math.isfinite(value):
                errs.append(f"{p}.{key}={value} must be a finite number")
            over(f"{p}.{key}", value, lim.max_ratio)
    h = spec.head
    over("head.hidden", h.hidden, lim.max_width)
    over("head.outputs", h.outputs, lim.max_outputs)
    if isinstance(h.dropout, float) and not math.isfinite(h.dropout):
        errs.append(f"head.dropout={h.dropout} must be a finite number")
    if not errs:
        errs.extend(_param_problems(spec))
    return errs


def _param_problems(spec: "ArchSpec") -> list[str]:
    """A rough parameter count (any block type: width^2 times its widening
    ratios, plus its kernels), so that a spec whose weights alone would not
    fit in memory is refused before it is built."""
    numbers = [(i, s) for i, s in enumerate(spec.stages)
               if all(isinstance(v, int) and not isinstance(v, bool) for v in (s.width, s.depth))]
    total = 0.0
    biggest = (0.0, 0)
    in_ch = max(spec.stem.widths, default=3) if spec.stem.kind != "none" else 3
    for i, s in numbers:
        ratios = [float(r) for r in (s.expansion, s.mlp_ratio, s.value_ratio)
                  if isinstance(r, (int, float)) and r > 0]
        ratio = max(ratios, default=1.0)
        k = s.kernel if isinstance(s.kernel, int) and s.kernel > 0 else 1
        block = s.width * s.width * (4.0 + 2.0 * ratio) + s.width * k * k * ratio
        stage = max(s.depth, 0) * block + in_ch * s.width
        total += stage
        biggest = max(biggest, (stage, i))
        in_ch = s.width
    if total > SPEC_LIMITS.max_params:
        s = spec.stages[biggest[1]]
        return [f"stages[{biggest[1]}] (width={s.width}, depth={s.depth}) brings the network to "
                f"about {total:.3g} parameters, over the limit of {SPEC_LIMITS.max_params:.3g}"]
    return []


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def downsampled(n: int, stride: int) -> int:
    """The size of an axis of length ``n`` after a layer with ``stride``."""
    # Same arithmetic as a conv with kernel=stride or 3x3/padding 1: ceil(n / stride).
    return -(-n // stride) if stride > 1 else n


def _make(klass: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__} {short_repr(data)}")
    names = {f.name: f for f in fields(klass)}
    unknown = set(data) - set(names)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        expected = str(names[key].type)
        ok = True
        if value is None:
            ok = "None" in expected
        elif expected.startswith("tuple"):
            if isinstance(value, (list, tuple)) and len(value) > SPEC_LIMITS.max_stem_convs:
                raise SpecError(f"{where}.{key} has {len(value)} entries, over the limit of "
                                f"{SPEC_LIMITS.max_stem_convs}")
            ok = isinstance(value, (list, tuple, int)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in _as_tuple(value))
            value = tuple(_as_tuple(value))
        else:
            base = expected.split("|")[0].strip()
            kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}.get(base)
            if kinds is not None:
                ok = isinstance(value, kinds) and (base == "bool" or not isinstance(value, bool))
        if not ok:
            raise SpecError(f"{where}.{key}={short_repr(value)} has the wrong type (expected {expected})")
        kwargs[key] = value
    if klass is StageSpec:
        for req in ("block", "depth", "width"):
            if req not in kwargs:
                raise SpecError(f"{where}: missing key '{req}'")
    return klass(**kwargs)


def _stage_problems(i: int, s: StageSpec, dims: int, last: bool) -> list[str]:
    p = f"stages[{i}]"
    schema = BLOCK_SCHEMAS.get(s.block)
    if schema is None:
        return [f"{p}.block={s.block!r} is not a known block; known: {sorted(BLOCK_SCHEMAS)}"]
    errs = []
    if dims not in schema.dims:
        errs.append(f"{p}.block={s.block!r} has no {dims}-D version")
    if s.depth < 1 and not (s.block == "levit" and s.stride > 1 and s.depth == 0):
        errs.append(f"{p}.depth={s.depth} must be >= 1")
    if s.width < 1:
        errs.append(f"{p}.width={s.width} must be >= 1")
    max_stride = 8 if s.block == "cvt" else 2
    if s.stride < 1 or s.stride > max_stride:
        errs.append(f"{p}.stride={s.stride} must be between 1 and {max_stride} for block {s.block!r}")
    for name in BLOCK_PARAM_FIELDS:
        if name not in schema.params and getattr(s, name) is not None:
            errs.append(f"{p}.{name}={getattr(s, name)!r} is not a parameter of block "
                        f"{s.block!r} (it takes {sorted(schema.params)})")
    if errs:
        return errs
    if s.kernel is not None and (s.kernel < 1):
        errs.append(f"{p}.kernel={s.kernel} must be >= 1")
    if s.kernel is not None and s.block != "cvt" and s.kernel % 2 == 0:
        errs.append(f"{p}.kernel={s.kernel} must be odd")
    for name in ("expansion", "mlp_ratio", "value_ratio"):
        v = getattr(s, name)
        if v is not None and v <= 0:
            errs.append(f"{p}.{name}={v} must be > 0")
    if s.se_ratio is not None and not 0 <= s.se_ratio < 1:
        errs.append(f"{p}.se_ratio={s.se_ratio} must be in [0, 1)")
    if s.layer_scale is not None and s.layer_scale < 0:
        errs.append(f"{p}.layer_scale={s.layer_scale} must be >= 0 (0 switches it off)")
    norms = CONV_NORMS if s.block == "resnet" else NORMS
    if s.norm is not None and s.norm not in norms:
        errs.append(f"{p}.norm={s.norm!r} is not one of {list(norms)}")
    errs.extend(_downsample_problems(p, s))
    if s.act is not None and s.act not in ACTS:
        errs.append(f"{p}.act={s.act!r} is not one of {list(ACTS)}")
    if s.window is not None and s.window < 1:
        errs.append(f"{p}.window={s.window} must be >= 1")
    if s.key_dim is not None and s.key_dim < 1:
        errs.append(f"{p}.key_dim={s.key_dim} must be >= 1")
    if s.kv_stride is not None and s.kv_stride < 1:
        errs.append(f"{p}.kv_stride={s.kv_stride} must be >= 1")
    if s.attention is not None and schema.attention_kinds and s.attention not in schema.attention_kinds:
        errs.append(f"{p}.attention={s.attention!r} is not supported by block {s.block!r} "
                    f"(choose from {list(schema.attention_kinds)})")
    if s.attn_blocks is not None and not 0 <= s.attn_blocks <= s.depth:
        errs.append(f"{p}.attn_blocks={s.attn_blocks} must be between 0 and depth={s.depth}")
    uses_heads = "heads" in schema.params and "key_dim" not in schema.params
    if uses_heads:
        if s.heads is None or s.heads < 1:
            errs.append(f"{p}.heads={s.heads} must be >= 1")
        elif s.width % s.heads:
            errs.append(f"{p}.heads={s.heads} does not divide width={s.width}")
        elif s.head_dim is not None and s.heads * s.head_dim != s.width:
            errs.append(f"{p}.head_dim={s.head_dim} times heads={s.heads} must equal "
                        f"width={s.width}")
    elif "heads" in schema.params and (s.heads is None or s.heads < 1):
        errs.append(f"{p}.heads={s.heads} must be >= 1")
    if s.cls_token and not last:
        errs.append(f"{p}.cls_token=true is only allowed in the last stage")
    if s.cls_token and s.attention == "rel":
        errs.append(f"{p}.cls_token=true needs attention='global' (relative bias has no "
                    f"position for the class token)")
    return errs


def _downsample_problems(p: str, s: StageSpec) -> list[str]:
    if s.downsample is None:
        return [f"{p}.{name}={getattr(s, name)!r} needs a downsample (it is not 'block')"
                for name in ("down_kernel", "down_norm") if getattr(s, name) is not None]
    if s.downsample not in DOWNSAMPLERS:
        return [f"{p}.downsample={s.downsample!r} is not one of {list(DOWNSAMPLE_KINDS)}"]
    errs = []
    takes = DOWNSAMPLERS[s.downsample]
    for name in ("down_kernel", "down_norm"):
        if name not in takes and getattr(s, name) is not None:
            errs.append(f"{p}.{name}={getattr(s, name)!r} is not a parameter of downsample "
                        f"{s.downsample!r} (it takes {sorted(takes) or 'none'})")
    if s.block == "cvt":
        errs.append(f"{p}.downsample={s.downsample!r}: block 'cvt' embeds its input itself")
    if s.down_kernel is not None and (s.down_kernel < 1 or s.down_kernel % 2 == 0):
        errs.append(f"{p}.down_kernel={s.down_kernel} must be odd and >= 1 (the output is "
                    f"ceil(n / stride))")
    if s.down_norm is not None and s.down_norm not in NORMS:
        errs.append(f"{p}.down_norm={s.down_norm!r} is not one of {list(NORMS)}")
    return errs


def _axis_problems(spec: ArchSpec) -> list[str]:
    errs = []
    pooled_at = None
    for i, s in enumerate(spec.stages):
        p = f"stages[{i}]"
        if s.axis is None:
            if pooled_at is not None:
                errs.append(f"{p}.block={s.block!r} follows stages[{pooled_at}].axis='assets', "
                            f"which averaged time away: only transformer stages with "
                            f"axis='assets' can follow")
            continue
        if not spec.assets:
            errs.append(f"{p}.axis={s.axis!r} needs a multi-asset spec (assets=true)")
            continue
        if s.block not in AXIS_BLOCKS:
            errs.append(f"{p}.axis={s.axis!r} is not a parameter of block {s.block!r} "
                        f"(only {list(AXIS_BLOCKS)} take it)")
            continue
        if s.axis not in AXES:
            errs.append(f"{p}.axis={s.axis!r} is not one of {list(AXES)}")
            continue
        if s.axis != "time" and s.stride != 1:
            errs.append(f"{p}.stride={s.stride} must be 1 with axis={s.axis!r} "
                        f"(assets cannot be downsampled)")
        if s.axis != "time" and s.attention != "global":
            errs.append(f"{p}.attention={s.attention!r} must be 'global' with axis={s.axis!r} "
                        f"(assets have no order for a position bias)")
        if s.axis != "time" and (s.pos_embed or s.cls_token):
            errs.append(f"{p}.axis={s.axis!r} allows no pos_embed/cls_token")
        if pooled_at is not None and s.axis != "assets":
            errs.append(f"{p}.axis={s.axis!r} follows stages[{pooled_at}].axis='assets', "
                        f"which averaged time away")
        if s.axis == "assets" and pooled_at is None:
            pooled_at = i
    if spec.assets and spec.head.pool != "avg":
        errs.append(f"head.pool={spec.head.pool!r} must be 'avg' with assets=true (the head "
                    f"averages each asset's features over time)")
    return errs
