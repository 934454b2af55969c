"""The builder's CPU kernel choices against the alternative, on this CPU.

Two choices are measured, each for the shapes the named networks have at the
proxy and inference sizes, with both times side by side, their ratio, what
the builder picks and whether that is the faster one here:

- **Conv memory layout.** On the CPU the builder keeps 2-D maps channels-last
  (``hybridnas.blocks.layers.cpu_maps``) and, while training, gives depthwise
  convs with kernels over 3x3 and at least ``DEPTHWISE_CHANNELS_FIRST_MIN``
  weights channels-first input (``depthwise_input``); a patchify stem (kernel =
  stride over the image channels) takes the image as it is, channels first
  (``HybridNet.forward_features``); while training, a dense kxk conv with more
  than ``DENSE_CHANNELS_FIRST_RATIO`` times as many weights as its input has
  values runs channels-first (``dense_conv``). In inference the stems' convs (and
  weight-standardised convs) run in the layout timed faster for their shape
  (``timed_conv``); for the dense rows of the inference table the pick is
  what that timing chose, so the column checks the timing against this one.
- **Attention.** ``layers.attend`` calls ``F.scaled_dot_product_attention``
  except on the CPU where values are wider than keys, or while training with
  a bias; there it writes matmul + softmax out (``attention_written_out``).
  q, k and v are the heads views of (B, N, heads, d) projections, as the
  blocks make them (contiguous copies time differently: written out wins
  there for small grids without a bias too).

- **Packed linears** (inference only). In plain CPU inference ``layers.linear``
  runs a linear layer on a weight packed once into oneDNN's blocked layout,
  with the activation applied inside the matmul, where timing shows that is
  faster for the shape (``layers.faster``; plain below ``PACKED_MIN_MACS``
  multiply-adds or ``PACKED_MIN_ROWS`` rows, untimed: a warm loop like this
  one can find packed faster over few rows where a whole network, its
  weights cold, runs slower); a transformer block that could run
  PyTorch's fused encoder layer times that against itself written out with
  packed linears (``TransformerBlock._fuse``). The pick is what that timing chose.
- **1x1 convs as linear layers** (inference only). On channels-last maps with
  one thread and a batch under 16, MBConv's and EfficientFormer's 1x1 convs
  run as linear layers over the pixels (``layers.pointwise_conv``), packed
  where that times faster; the table times them against the conv with its
  activation applied after.

    python benchmarks/bench_cpu_kernels.py                # training: forward + backward
    python benchmarks/bench_cpu_kernels.py --inference    # forward, no grad, batch 1 convs

One thread, thread CPU time, median over rounds. oneDNN picks its kernels by
CPU, so a threshold may sit elsewhere on other machines: rerun this there.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.blocks import layers

#: (in channels, out channels, kernel, stride, groups, map size); groups 0 = depthwise.
CONVS = [
    # depthwise 3x3: MBConv (CoAtNet, MaxViT), CvT projections
    (384, 384, 3, 1, 0, 28), (768, 768, 3, 1, 0, 14), (1024, 1024, 3, 1, 0, 7),
    (2048, 2048, 3, 1, 0, 4), (384, 384, 3, 2, 0, 56),
    # depthwise 5x5 / 7x7: ConvNeXt, interleaved, MBConv search decisions
    (96, 96, 7, 1, 0, 28), (192, 192, 7, 1, 0, 14), (384, 384, 7, 1, 0, 7),
    (640, 640, 7, 1, 0, 7), (768, 768, 7, 1, 0, 4), (768, 768, 5, 1, 0, 7),
    (1536, 1536, 5, 1, 0, 7),
    # dense: conv and patchify stems, 1x1 expansions, patch downsamplers
    (3, 64, 3, 2, 1, 112), (3, 16, 3, 2, 1, 112), (3, 64, 7, 2, 1, 112),
    (3, 768, 16, 16, 1, 112), (3, 96, 4, 4, 1, 112), (64, 64, 3, 1, 1, 56),
    (96, 384, 1, 1, 1, 28), (384, 96, 1, 1, 1, 28), (96, 192, 2, 2, 1, 28),
    # the seed's hybrid stem and ViT_C stems further down (3x3 stride 2)
    (128, 256, 3, 2, 1, 56), (256, 768, 3, 2, 1, 28), (192, 384, 3, 2, 1, 14),
    # wide convs over small maps at the proxy size (``dense_conv``): the hybrid stem's
    # last conv, LeViT's stem, EfficientFormer's and ConvNeXt's last downsamplers
    (256, 768, 3, 2, 1, 14), (64, 128, 3, 2, 1, 14), (224, 448, 3, 2, 1, 7),
    (384, 768, 2, 2, 1, 7),
]

#: name: (batch x windows, heads, queries, keys, head dim, learned bias)
ATTENTION = {
    "ViT-B/16 @112 (50 tokens)": (4, 12, 50, 50, 64, False),
    "ViT-B/16 @224 (197 tokens)": (4, 12, 197, 197, 64, False),
    "Swin-T stage 1 windows": (64, 3, 49, 49, 32, True),
    "Swin-T stage 3 windows": (4, 12, 49, 49, 32, True),
    "MaxViT-T stage 1 windows": (64, 2, 49, 49, 32, True),
    "CoAtNet-0 stage 3 @112": (4, 16, 49, 49, 32, True),
    "CvT-13 stage 1 @112 (kv stride 2)": (4, 1, 784, 196, 64, False),
    "CvT-13 stage 2 @112": (4, 3, 196, 49, 64, False),
    "CvT-13 stage 3 @112": (4, 6, 49, 16, 64, False),
    "global 16x16 grid, bias": (4, 4, 256, 256, 32, True),
    "global 20x20 grid": (2, 2, 400, 400, 64, False),
}


def _time(fn, rounds: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def _row(label: str, ms: dict, names: tuple[str, str], pick: str) -> bool:
    a, b = names
    right = pick.split()[0] == min(ms, key=ms.get)  # "NHWC (timed)" picks NHWC
    print(f"{label:<36}{ms[a]:8.2f}{ms[b]:9.2f}{ms[b] / ms[a]:7.2f}  "
          f"{pick}{'' if right else '  (the other is faster here)'}")
    return right


def conv_layouts(train: bool, rounds: int) -> None:
    batch = 4 if train else 1
    print(f"\nconv layout, batch {batch}")
    print(f"{'conv':<36}{'NCHW':>8}{'NHWC':>9}{'ratio':>7}  builder picks")
    right = 0
    for cin, cout, k, stride, groups, size in CONVS:
        groups = groups or cin
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        ms = {}
        for name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            x = torch.randn(batch, cin, size, size).contiguous(memory_format=fmt)
            x.requires_grad_(train)
            grad = torch.randn_like(conv(x)) if train else None

            # inference: the weight in the map's order, as the builder keeps it (``laid_out``)
            weight = conv.weight if train else conv.weight.detach().contiguous(memory_format=fmt)

            def call(x=x, grad=grad, weight=weight):
                with torch.set_grad_enabled(train):
                    out = conv._conv_forward(x, weight, None)
                    if train:
                        out.backward(grad)
            ms[name] = _time(call, rounds) * 1e3
        probe = torch.empty(1, cin, 2, 2).contiguous(memory_format=torch.channels_last)
        depthwise = groups == cin > 1
        with torch.set_grad_enabled(train):
            first = depthwise and layers.depthwise_input(conv, probe).is_contiguous()
            if groups == 1 and train:  # what dense_conv hands the conv at this size
                seen = []
                hook = conv.register_forward_pre_hook(
                    lambda m, args: seen.append(args[0].is_contiguous()))
                layers.dense_conv(conv, x.contiguous(memory_format=torch.channels_last))
                hook.remove()
                first = seen[0]
        patchify = cin == 3 and k == stride  # a patchify stem takes the image as it is
        pick = "NCHW" if first or patchify else "NHWC"
        kind = "depthwise" if depthwise else "patchify" if patchify else "dense"
        if not train and not depthwise:  # stem convs in inference: timed per shape
            layers._CONV_LAYOUTS.clear()
            with torch.no_grad():
                layers.timed_conv(conv, x, conv.weight, conv.bias)
            (channels_last,) = layers._CONV_LAYOUTS.values()
            pick = ("NHWC" if channels_last else "NCHW") + " (timed)"
        right += _row(f"{kind} {k}x{k}/{stride} {cin}->{cout} @{size}", ms, ("NCHW", "NHWC"),
                      pick)
    print(f"the builder's layout is the faster one for {right} of {len(CONVS)} convs")


def written_out(q, k, v, bias):
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(-1) @ v


def attention(train: bool, rounds: int) -> None:
    print("\nattention (q, k, v: heads views of (B, N, heads, d) projections)")
    print(f"{'attention':<36}{'fused':>8}{'written':>9}{'ratio':>7}  attend picks")
    right = 0
    for name, (b, h, n, m, d, has_bias) in ATTENTION.items():
        q = torch.randn(b, n, h, d, requires_grad=train).transpose(1, 2)
        k, v = (torch.randn(b, m, h, d, requires_grad=train).transpose(1, 2) for _ in range(2))
        bias = torch.randn(1, h, n, m, requires_grad=train) if has_bias else None
        grad = torch.randn(b, h, n, d)
        ms = {}
        for kind in ("fused", "written"):
            def call(kind=kind):
                with torch.set_grad_enabled(train):
                    out = (F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                           if kind == "fused" else written_out(q, k, v, bias))
                    if train:
                        out.backward(grad)
            ms[kind] = _time(call, rounds) * 1e3
        with torch.set_grad_enabled(train):
            pick = "written" if layers.attention_written_out(q, k, v, bias) else "fused"
        right += _row(name, ms, ("fused", "written"), pick)
    print(f"attend's pick is the faster one for {right} of {len(ATTENTION)} shapes")


#: name: (rows, in features, out features, activation): linear layers of the
#: named networks at batch 1, 224 px, and of small proxy models.
LINEARS = {
    "ViT-B/16 qkv (197 tokens)": (197, 768, 2304, None),
    "ViT-B/16 proj": (197, 768, 768, None),
    "ViT-B/16 MLP fc1 + GELU": (197, 768, 3072, "gelu"),
    "ViT-B/16 MLP fc2": (197, 3072, 768, None),
    "LeViT-128S stage 1 qkv (196)": (196, 128, 256, None),
    "LeViT-128S stage 3 MLP + hswish (16)": (16, 384, 768, "hardswish"),
    "EfficientFormer-L1 stage 4 fc1 (49)": (49, 448, 1792, "gelu"),
    "classifier 768 -> 1000 (1 row)": (1, 768, 1000, None),
    "proxy 64 wide, 49 tokens qkv": (49, 64, 192, None),
    "proxy 128 wide, 16 tokens fc1 + GELU": (16, 128, 512, "gelu"),
}

#: name: (in, out, map size, activation) of a 1x1 conv on a channels-last map
#: (MBConv's expansion with its activation and projection; EfficientFormer's conv MLP).
POINTWISE = {
    "CoAtNet-0 S1 expand 64->384 @112": (64, 384, 112, "gelu"),
    "CoAtNet-0 S1 expand 96->384 @56": (96, 384, 56, "gelu"),
    "CoAtNet-0 S1 project 384->96 @56": (384, 96, 56, None),
    "CoAtNet-0 S2 expand 192->768 @28": (192, 768, 28, "gelu"),
    "CoAtNet-0 S2 project 768->192 @28": (768, 192, 28, None),
    "EfficientFormer-L1 mlp 48->192 @56": (48, 192, 56, "gelu"),
    "EfficientFormer-L1 mlp 192->48 @56": (192, 48, 56, None),
    "EfficientFormer-L1 mlp 224->896 @14": (224, 896, 14, "gelu"),
}

#: name: (width, heads, tokens) of an encoder layer the fused kernel can run.
ENCODERS = {
    "ViT-B/16 (197 tokens)": (768, 12, 197),
    "ViT-S (197 tokens)": (384, 6, 197),
    "ViT-Ti @112 (50 tokens)": (192, 3, 50),
    "proxy 64 wide, 49 tokens": (64, 2, 49),
}


def packed_linears(rounds: int) -> None:
    print("\nlinear layers, inference (weight packed for oneDNN, activation fused)")
    print(f"{'linear':<36}{'plain':>8}{'packed':>9}{'ratio':>7}  linear picks")
    right = timed = 0
    for name, (rows, cin, cout, act_name) in LINEARS.items():
        fc = layers.Linear(cin, cout)
        act = layers.make_act(act_name) if act_name else None
        x = torch.randn(1, rows, cin)
        ms = {}
        with torch.inference_mode():
            layers.CPU_PACKED_LINEAR = False
            ms["plain"] = _time(lambda: fc(x, act), rounds) * 1e3
            layers.CPU_PACKED_LINEAR = True
            layers._LINEAR_PACKED.clear()
            fc(x, act)  # first sight
            fc(x, act)  # packs and times
            if x.numel() * cout < layers.PACKED_MIN_MACS:
                pick = "plain (small)"
            elif rows < layers.PACKED_MIN_ROWS:
                pick = "plain (few rows)"
            else:
                pick = ("packed" if layers.packed_for(fc, x) else "plain") + " (timed)"
            slot = fc.__dict__.get("_packed")
            packed = slot.packed if slot is not None else None
            if packed is None:  # plain chosen: pack to time it all the same
                packed = layers._reorder(fc.weight)
            ms["packed"] = _time(lambda: layers._packed_linear(x, packed, fc.bias, act),
                                 rounds) * 1e3
        hit = _row(name, ms, ("plain", "packed"), pick)
        if pick.endswith("(timed)"):  # the untimed ones run plain by rule, not by this timing
            right += hit
            timed += 1
    print(f"the timed pick is the faster one for {right} of {timed} timed linears")


def pointwise_convs(rounds: int) -> None:
    print("\n1x1 convs, inference, batch 1, channels-last maps: the conv (with its activation) "
          "vs a linear layer over the pixels (pointwise_conv)")
    print(f"{'1x1 conv':<36}{'conv':>8}{'linear':>9}{'ratio':>7}  builder runs")
    right = 0
    for name, (cin, cout, size, act_name) in POINTWISE.items():
        conv = nn.Conv2d(cin, cout, 1)
        act = layers.make_act(act_name) if act_name else None
        x = torch.randn(1, cin, size, size).contiguous(memory_format=torch.channels_last)

        def as_conv():
            y = conv._conv_forward(x, conv.weight, conv.bias)
            return y if act is None else layers.fresh_act(act, y)

        def as_linear():
            return layers.pointwise_conv(conv, x, conv.weight, conv.bias, act)

        with torch.inference_mode():
            layers._LINEAR_PACKED.clear()
            for _ in range(3):  # first sight, then the packed-or-plain timing
                as_linear()
            ms = {"conv": _time(as_conv, rounds) * 1e3, "linear": _time(as_linear, rounds) * 1e3}
        right += _row(name, ms, ("conv", "linear"), "linear")
    print(f"the linear is the faster one for {right} of {len(POINTWISE)} 1x1 convs")


def encoder_layers(rounds: int) -> None:
    from hybridnas.blocks.transformer import _FUSED_FASTER, TransformerBlock
    from hybridnas.spec import StageSpec
    print("\ntransformer block, inference: PyTorch's fused encoder layer vs written out "
          "(packed linears)")
    print(f"{'block, batch 1':<36}{'fused':>8}{'written':>9}{'ratio':>7}  block picks")
    right = 0
    for name, (width, heads, tokens) in ENCODERS.items():
        stage = StageSpec(block="transformer", depth=1, width=width, heads=heads,
                          attention="global", norm="ln", act="gelu")
        block = TransformerBlock(width, stage).eval()
        x = torch.randn(1, tokens, width)
        with torch.inference_mode():
            _FUSED_FASTER.clear()
            for _ in range(3):  # linears: first sight, packing; then the block is timed
                block(x)
            pick = ("fused" if block._fuse(x) else "written") + " (timed)"
            ms = {"fused": _time(lambda: block._fused(x), rounds) * 1e3,
                  "written": _time(lambda: block._written(x), rounds) * 1e3}
        right += _row(name, ms, ("fused", "written"), pick)
    print(f"the timed pick is the faster one for {right} of {len(ENCODERS)} blocks")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inference", action="store_true", help="time forward calls without grad")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = not args.inference
    print(f"{'training (forward + backward)' if train else 'inference'}; one thread; ms per "
          f"call, median of {args.rounds}; ratio: second column / first")
    conv_layouts(train, args.rounds)
    attention(train, args.rounds)
    if not train:
        packed_linears(args.rounds)
        pointwise_convs(args.rounds)
        encoder_layers(args.rounds)


if __name__ == "__main__":
    main()
