"""Builder models vs hand-written PyTorch versions of the same networks:
inference latency (batch 1, 224x224, one thread, eval, ``torch.inference_mode``)
and training-step time (forward + backward + SGD step), side by side in one
run for every named 2-D family.

Ratios are time(builder) / time(hand-written): target <= 1.0. Timing
alternates between the two implementations call by call so drift in machine
load hits both equally; medians are reported. The summary gives the largest
inference and training ratios and, for each family above 1.0, a 95 %
interval of its median (the sign test's, from the pairs of rounds): an
interval that holds 1.0 is a tie within the run's noise (two networks
running the same kernels), one above it a measured loss. The hand-written
versions follow timm's implementations (attention-bias tables cached in eval
as timm's LeViT does, SDPA with the bias as mask as timm's CoAtNet/Swin do)
and have the builder model's parameter count (printed side by side).

    python benchmarks/bench_models.py                       # every family, CPU defaults
    python benchmarks/bench_models.py --models levit_128s coatnet_0 --runs 20
    python benchmarks/bench_models.py --clock thread --train-steps 0   # shared machine
    python benchmarks/bench_models.py --device cuda --train-resolution 224 --batch-size 64
    python benchmarks/bench_models.py --hand-channels-last   # references converted too

On the CPU the builder runs 2-D maps channels-last (``blocks.layers.cpu_maps``),
which speeds up oneDNN's convolutions; the hand-written versions run as
written (channels first), as timm's models do unless their user converts
them. ``--hand-channels-last`` converts the hand-written model and its input
to ``torch.channels_last`` as such a user would, to show how much of a ratio
is that layout.

In CPU inference the builder also runs linear layers on weights packed for
oneDNN, with their activation fused, where that is faster for the shape
(``blocks.layers.linear``), and a ViT block as the faster of PyTorch's fused
encoder layer and itself written out with packed linears; the hand-written
versions call ``F.linear`` / ``nn.TransformerEncoderLayer`` as written.
``--plain-linear`` turns packing off in the builder, to show how much of an
inference ratio it is.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import hybridnas
from hybridnas.blocks import layers as builder_layers
from hybridnas.complexity import count_macs


# ---------------------------------------------------------------- hand-written
def _tokens(x):
    return x.flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """ViT body on any stem (patchify, conv, ResNet): class token, learned
    position embedding, ``nn.TransformerEncoder`` (pre-norm, GELU), LN, head."""

    def __init__(self, stem, grid, embed_dim=768, depth=12, heads=12, mlp_ratio=4.0,
                 num_classes=1000):
        super().__init__()
        self.stem = stem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=heads,
                                           dim_feedforward=int(mlp_ratio * embed_dim), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = _tokens(self.stem(x))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(x))[:, 0])


class PadEven(nn.Module):
    """Zero-pad odd maps on the far side before a 2x2 stride-2 patch conv, so it
    outputs ceil(n / 2) as the builder's downsamplers do (same network at any size)."""

    def forward(self, x):
        return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


def conv_bn_act(cin, cout, k=3, s=2, act=nn.ReLU, norm=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act())
    return layers


def seed_conv_stem(embed_dim=768):
    """The seed's HybridViT stem: 3x3 stride-2 conv-BN-ReLU x3, conv-BN to embed_dim."""
    return nn.Sequential(*conv_bn_act(3, 64), *conv_bn_act(64, 128), *conv_bn_act(128, 256),
                         *conv_bn_act(256, embed_dim, act=None))


def vit_c_stem(widths, embed_dim):
    """Xiao et al.'s ViT_C stem: 3x3 stride-2 conv-BN-ReLU per width, then a 1x1 conv."""
    layers, cin = [], 3
    for w in widths:
        layers += conv_bn_act(cin, w)
        cin = w
    return nn.Sequential(*layers, nn.Conv2d(cin, embed_dim, 1))


class StdConv2d(nn.Conv2d):
    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Bottleneck(nn.Module):
    """ResNet bottleneck with GroupNorm + weight-standardised convs (BiT)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = cout // 4
        self.conv1, self.gn1 = StdConv2d(cin, mid, 1, bias=False), nn.GroupNorm(32, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, mid)
        self.conv3, self.gn3 = StdConv2d(mid, cout, 1, bias=False), nn.GroupNorm(32, cout)
        self.down = None
        if stride > 1 or cin != cout:
            self.down = nn.Sequential(StdConv2d(cin, cout, 1, stride, bias=False),
                                      nn.GroupNorm(32, cout))

    def forward(self, x):
        sc = x if self.down is None else self.down(x)
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(sc + self.gn3(self.conv3(y)))


def r50_stem(embed_dim=768, depths=(3, 4, 9)):
    """R50 (GN + WS) with stage 4 removed, then the hybrid's 1x1 projection."""
    layers = [StdConv2d(3, 64, 7, 2, 3, bias=False), nn.GroupNorm(32, 64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (d, w) in enumerate(zip(depths, (256, 512, 1024))):
        for j in range(d):
            layers.append(Bottleneck(cin, w, 2 if (i and not j) else 1))
            cin = w
    return nn.Sequential(*layers, nn.Conv2d(cin, embed_dim, 1))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvNeXtT(nn.Module):
    def __init__(self, num_classes=1000, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (d, w) in enumerate(zip(depths, dims)):
            if i:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), PadEven(),
                           nn.Conv2d(dims[i - 1], w, 2, 2)]
            layers += [ConvNeXtBlock(w) for _ in range(d)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))


# ---- LeViT (as timm: tokens (B, N, C), BN-linears, attention biases cached in eval)
class LinearNorm(nn.Sequential):
    def __init__(self, cin, cout, bn_weight=1.0):
        super().__init__(nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout))
        nn.init.constant_(self[1].weight, bn_weight)

    def forward(self, x):
        return self[1](self[0](x).flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1)


def _offset_index(res, stride, table):
    k = torch.stack(torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")).flatten(1)
    q = torch.stack(torch.meshgrid(torch.arange(0, res, stride), torch.arange(0, res, stride),
                                   indexing="ij")).flatten(1)
    rel = (q[:, :, None] - k[:, None, :]).abs()
    return rel[0] * table + rel[1]


class LeViTAttention(nn.Module):
    def __init__(self, dim, out, heads, kd, vd, res, stride=1, bn_weight=1.0):
        super().__init__()
        self.heads, self.kd, self.vd, self.res, self.stride = heads, kd, vd, res, stride
        if stride == 1:
            self.qkv = LinearNorm(dim, heads * (2 * kd + vd))
        else:
            self.kv = LinearNorm(dim, heads * (kd + vd))
            self.q = LinearNorm(dim, heads * kd)
        self.proj = nn.Sequential(nn.Hardswish(), LinearNorm(heads * vd, out, bn_weight))
        table = math.ceil(res / stride) * stride  # the builder's table: window x stride
        self.biases = nn.Parameter(torch.zeros(heads, table * table))
        self.register_buffer("idx", _offset_index(res, stride, table), persistent=False)
        self._cache = {}

    def ab(self, device):
        if self.training:
            return self.biases[:, self.idx]
        key = str(device)
        if key not in self._cache:
            self._cache[key] = self.biases[:, self.idx]
        return self._cache[key]

    def train(self, mode=True):
        super().train(mode)
        self._cache = {}
        return self

    def forward(self, x):
        b, n, _ = x.shape
        h = self.heads
        if self.stride == 1:
            q, k, v = self.qkv(x).view(b, n, h, -1).split([self.kd, self.kd, self.vd], 3)
            q = q.permute(0, 2, 1, 3)
        else:
            k, v = self.kv(x).view(b, n, h, -1).split([self.kd, self.vd], 3)
            xq = x.view(b, self.res, self.res, -1)[:, ::self.stride, ::self.stride].reshape(b, -1,
                                                                                           x.shape[-1])
            q = self.q(xq).view(b, -1, h, self.kd).permute(0, 2, 1, 3)
        k, v = k.permute(0, 2, 3, 1), v.permute(0, 2, 1, 3)
        attn = (q @ k) * self.kd ** -0.5 + self.ab(x.device)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, h * self.vd)
        return self.proj(x)


class LeViTMlp(nn.Sequential):
    def __init__(self, dim, hidden):
        super().__init__(LinearNorm(dim, hidden), nn.Hardswish(), LinearNorm(hidden, dim, 0.0))


class Residual(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class LeViT(nn.Module):
    def __init__(self, img_size=224, widths=(128, 256, 384), heads=(4, 6, 8), depths=(2, 3, 4),
                 kd=16, num_classes=1000):
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(*conv_bn_act(3, w0 // 8, act=nn.Hardswish),
                                  *conv_bn_act(w0 // 8, w0 // 4, act=nn.Hardswish),
                                  *conv_bn_act(w0 // 4, w0 // 2, act=nn.Hardswish),
                                  *conv_bn_act(w0 // 2, w0, act=None))
        res = math.ceil(img_size / 16)
        layers = []
        for i, (w, h, d) in enumerate(zip(widths, heads, depths)):
            if i:
                win = widths[i - 1]
                layers += [LeViTAttention(win, w, win // kd, kd, 4 * kd, res, stride=2),
                           Residual(LeViTMlp(w, 2 * w))]
                res = math.ceil(res / 2)
            for _ in range(d):
                layers += [Residual(LeViTAttention(w, w, h, kd, 2 * kd, res, bn_weight=0.0)),
                           Residual(LeViTMlp(w, 2 * w))]
        self.blocks = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        self.head_dist = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.norm(self.blocks(_tokens(self.stem(x))).mean(1))
        return (self.head(x) + self.head_dist(x)) / 2


# ---- CoAtNet (as timm: MBConv NCHW, transformer NHWC with relative bias in SDPA)
def _rel_index(n):
    c = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")).flatten(1)
    rel = c[:, :, None] - c[:, None, :]
    return (rel[0] + n - 1) * (2 * n - 1) + rel[1] + n - 1


class SqueezeExcite(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, hidden, 1), nn.Conv2d(hidden, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride, expansion=4, se=0.25):
        super().__init__()
        mid = cout * expansion
        self.shortcut = nn.Identity()
        if stride > 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True,
                                                       count_include_pad=False),
                                          nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity())
        self.pre_norm = nn.BatchNorm2d(cin)
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, int(mid * se))
        self.conv3 = nn.Conv2d(mid, cout, 1)

    def forward(self, x):
        y = F.gelu(self.bn1(self.conv1(self.pre_norm(x))))
        y = self.se(F.gelu(self.bn2(self.conv2(y))))
        return self.shortcut(x) + self.conv3(y)


class RelAttention(nn.Module):
    def __init__(self, cin, cout, heads, grid):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(cin, 3 * cout), nn.Linear(cout, cout)
        self.table = nn.Parameter(torch.zeros(heads, (2 * grid - 1) ** 2))
        self.register_buffer("idx", _rel_index(grid), persistent=False)

    def forward(self, x):  # (B, N, C)
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.table[:, self.idx])
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


class RelTransformerBlock(nn.Module):
    def __init__(self, cin, cout, heads, grid, stride):
        super().__init__()
        self.stride = stride
        self.norm1 = nn.LayerNorm(cin, eps=1e-6)
        self.proj = nn.Linear(cin, cout) if cin != cout else nn.Identity()
        self.attn = RelAttention(cin, cout, heads, grid)
        self.norm2 = nn.LayerNorm(cout, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(cout, 4 * cout), nn.GELU(), nn.Linear(4 * cout, cout))

    def _pool(self, x):
        return F.avg_pool2d(x.permute(0, 3, 1, 2), self.stride, ceil_mode=True,
                            count_include_pad=False).permute(0, 2, 3, 1)

    def forward(self, x):  # (B, H, W, C)
        y = self.norm1(x)
        if self.stride > 1:
            x, y = self._pool(x), self._pool(y)
        b, h, w, _ = y.shape
        x = self.proj(x) + self.attn(y.reshape(b, h * w, -1)).view(b, h, w, -1)
        return x + self.mlp(self.norm2(x))


class CoAtNet(nn.Module):
    def __init__(self, img_size=224, depths=(2, 3, 5, 2), widths=(96, 192, 384, 768),
                 num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_act(3, 64, act=nn.GELU),
                                  nn.Conv2d(64, 64, 3, 1, 1, bias=False))
        convs, attns, cin, grid = [], [], 64, math.ceil(img_size / 2)
        for i, (d, w) in enumerate(zip(depths, widths)):
            grid = math.ceil(grid / 2)
            for j in range(d):
                if i < 2:
                    convs.append(MBConv(cin, w, 2 if j == 0 else 1))
                else:
                    attns.append(RelTransformerBlock(cin, w, w // 32, grid, 2 if j == 0 else 1))
                cin = w
        self.convs, self.attns = nn.Sequential(*convs), nn.Sequential(*attns)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.attns(self.convs(self.stem(x)).permute(0, 2, 3, 1))
        return self.head(self.norm(x.mean((1, 2))))


# ---- Swin-T (as timm: NHWC, per-call relative bias gather, precomputed shift masks)
class WindowAttention(nn.Module):
    def __init__(self, dim, heads, ws):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("idx", _rel_index(ws).flatten(), persistent=False)

    def forward(self, x, mask=None):  # (B*nW, N, C), mask (nW, N, N)
        bw, n, _ = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.table[self.idx].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).unsqueeze(0).expand(bw // nw, -1, -1, -1, -1)
            bias = bias.reshape(-1, self.heads, n, n)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(bw, n, -1))


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, res, ws=7, shift=0):
        super().__init__()
        self.ws, self.shift = min(ws, res), (shift if res > ws else 0)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowAttention(dim, heads, self.ws)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = None
        if self.shift:
            img, cnt, s, w = torch.zeros(res, res), 0, self.shift, self.ws
            for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                for vs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                    img[hs, vs] = cnt
                    cnt += 1
            win = img.view(res // w, w, res // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
            mask = (win[:, None, :] != win[:, :, None]).float() * -100.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):  # (B, H, W, C)
        b, h, w, c = x.shape
        ws, s = self.ws, self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, (-s, -s), (1, 2))
        y = y.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        y = self.attn(y, self.mask)
        y = y.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if s:
            y = torch.roll(y, (s, s), (1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * dim, eps=1e-6), nn.Linear(4 * dim, out, bias=False)

    def forward(self, x):
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinT(nn.Module):
    def __init__(self, img_size=224, depths=(2, 2, 6, 2), widths=(96, 192, 384, 768),
                 num_classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, widths[0], 4, 4)
        self.patch_norm = nn.LayerNorm(widths[0], eps=1e-6)
        layers, res = [], img_size // 4
        for i, (d, w) in enumerate(zip(depths, widths)):
            if i:
                layers.append(PatchMerging(widths[i - 1], w))
                res = math.ceil(res / 2)
            layers += [SwinBlock(w, w // 32, res, shift=3 if j % 2 else 0) for j in range(d)]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.layers(self.patch_norm(self.patch(x).permute(0, 2, 3, 1)))
        return self.head(self.norm(x.mean((1, 2))))


# ---- MaxViT-T (as timm: MBConv NCHW, block + grid attention NHWC with relative bias)
class PartitionAttention(nn.Module):
    def __init__(self, dim, ws=7, grid=False):
        super().__init__()
        self.ws, self.grid = ws, grid
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowAttention(dim, dim // 32, ws)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):  # (B, H, W, C), H and W multiples of the window
        b, h, w, c = x.shape
        ws, nh, nw = self.ws, h // self.ws, w // self.ws
        y = self.norm1(x)
        if self.grid:
            y = y.view(b, ws, nh, ws, nw, c).permute(0, 2, 4, 1, 3, 5)
        else:
            y = y.view(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5)
        y = self.attn(y.reshape(-1, ws * ws, c)).view(b, nh, nw, ws, ws, c)
        y = y.permute(0, 3, 1, 4, 2, 5) if self.grid else y.permute(0, 1, 3, 2, 4, 5)
        x = x + y.reshape(b, h, w, c)
        return x + self.mlp(self.norm2(x))


class MaxViTBlock(nn.Module):
    def __init__(self, cin, cout, stride, ws):
        super().__init__()
        self.conv = MBConv(cin, cout, stride, se=0.25 / 4)
        self.block = PartitionAttention(cout, ws)
        self.grid = PartitionAttention(cout, ws, grid=True)

    def forward(self, x):
        x = self.grid(self.block(self.conv(x).permute(0, 2, 3, 1)))
        return x.permute(0, 3, 1, 2)


class MaxViT(nn.Module):
    def __init__(self, img_size=224, depths=(2, 2, 5, 2), widths=(64, 128, 256, 512),
                 num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.GELU(),
                                  nn.Conv2d(64, 64, 3, 1, 1))
        blocks, cin, grid = [], 64, math.ceil(img_size / 2)
        for d, w in zip(depths, widths):
            grid = math.ceil(grid / 2)
            for j in range(d):  # window 7; smaller maps shrink it (as the builder does)
                blocks.append(MaxViTBlock(cin, w, 2 if j == 0 else 1, min(7, grid)))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.pre_logits = nn.Sequential(nn.Linear(cin, cin), nn.Tanh())
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x)).mean((2, 3))
        return self.head(self.pre_logits(self.norm(x)))


# ---- EfficientFormer-L1 (as timm: Meta4D NCHW, Meta3D tokens with cached biases in eval)
class Meta4D(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.mlp = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1), nn.BatchNorm2d(4 * dim), nn.GELU(),
                                 nn.Conv2d(4 * dim, dim, 1), nn.BatchNorm2d(dim))
        self.ls1 = nn.Parameter(1e-5 * torch.ones(dim, 1, 1))
        self.ls2 = nn.Parameter(1e-5 * torch.ones(dim, 1, 1))

    def forward(self, x):
        x = x + self.ls1 * (self.pool(x) - x)
        return x + self.ls2 * self.mlp(x)


class Meta3D(nn.Module):
    def __init__(self, dim, res, heads=8, kd=32, vd=128):
        super().__init__()
        self.heads, self.kd, self.vd = heads, kd, vd
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, heads * (2 * kd + vd))
        self.proj = nn.Linear(heads * vd, dim)
        self.biases = nn.Parameter(torch.zeros(heads, res * res))
        self.register_buffer("idx", _offset_index(res, 1, res), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ls1 = nn.Parameter(1e-5 * torch.ones(dim))
        self.ls2 = nn.Parameter(1e-5 * torch.ones(dim))
        self._cache = None

    def train(self, mode=True):
        super().train(mode)
        self._cache = None
        return self

    def attn(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, -1).permute(0, 2, 1, 3).split(
            [self.kd, self.kd, self.vd], 3)
        if self.training or self._cache is None:
            self._cache = self.biases[:, self.idx]
        a = (q @ k.transpose(-2, -1)) * self.kd ** -0.5 + self._cache
        return self.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))

    def forward(self, x):  # tokens (B, N, C)
        x = x + self.ls1 * self.attn(self.norm1(x))
        return x + self.ls2 * self.mlp(self.norm2(x))


class EfficientFormer(nn.Module):
    def __init__(self, img_size=224, depths=(3, 2, 6, 4), widths=(48, 96, 224, 448),
                 num_classes=1000):
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, w0 // 2, 3, 2, 1), nn.BatchNorm2d(w0 // 2),
                                  nn.ReLU(), nn.Conv2d(w0 // 2, w0, 3, 2, 1), nn.BatchNorm2d(w0),
                                  nn.ReLU())
        layers, cin, res = [], w0, math.ceil(img_size / 4)
        for i, (d, w) in enumerate(zip(depths, widths)):
            if i:
                layers += [nn.Conv2d(cin, w, 3, 2, 1), nn.BatchNorm2d(w)]
                res = math.ceil(res / 2)
            last = i == len(depths) - 1
            layers += [Meta4D(w) for _ in range(d - 1 if last else d)]
            cin = w
        self.meta4d = nn.Sequential(*layers)
        self.meta3d = Meta3D(cin, res)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.head, self.head_dist = nn.Linear(cin, num_classes), nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.norm(self.meta3d(_tokens(self.meta4d(self.stem(x)))).mean(1))
        return (self.head(x) + self.head_dist(x)) / 2


# ---- the seed's Pattern 3 block on the 2-D grid (interleaved_s)
class ConvTransformerBlock(nn.Module):
    def __init__(self, dim, heads, k=7):
        super().__init__()
        self.local_norm = nn.LayerNorm(dim, eps=1e-6)
        self.dwconv = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)
        self.local_proj = nn.Linear(dim, dim)
        self.global_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):  # (B, H, W, C)
        b, h, w, c = x.shape
        y = self.dwconv(self.local_norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = (x + self.local_proj(y)).reshape(b, h * w, c)
        y = self.global_norm(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.ffn(self.ffn_norm(x))
        return x.reshape(b, h, w, c)


class Interleaved(nn.Module):
    def __init__(self, depths=(2, 2, 6, 2), widths=(64, 128, 256, 512), num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_act(3, 32, act=nn.GELU), *conv_bn_act(32, 64, act=nn.GELU))
        stages, cin = [], 64
        for d, w in zip(depths, widths):
            down = nn.Identity()
            if w != cin:
                down = nn.Sequential(LayerNorm2d(cin, eps=1e-6), PadEven(), nn.Conv2d(cin, w, 2, 2))
            stages.append(nn.ModuleList([down, nn.Sequential(
                *[ConvTransformerBlock(w, w // 32) for _ in range(d)])]))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for down, blocks in self.stages:
            x = blocks(down(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(self.norm(x.mean((2, 3))))


# ---- the seed's Pattern 2 (CoAtNetStyle), dropout 0 (the spec has none)
class CoAtNetStyle(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.convs = nn.Sequential(*conv_bn_act(3, 64, act=nn.GELU),
                                   *conv_bn_act(64, 64, s=1, act=nn.GELU),
                                   *conv_bn_act(64, 128, act=nn.GELU),
                                   *conv_bn_act(128, 128, s=1, act=nn.GELU))
        self.downs = nn.ModuleList([nn.Sequential(*conv_bn_act(i, o, act=None))
                                    for i, o in ((128, 256), (256, 512))])
        self.stages = nn.ModuleList([
            nn.TransformerEncoder(nn.TransformerEncoderLayer(
                d, d // 64, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True), n, enable_nested_tensor=False)
            for d, n in ((256, 6), (512, 2))])
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.convs(x)
        for down, stage in zip(self.downs, self.stages):
            x = down(x)
            b, c, h, w = x.shape
            x = stage(_tokens(x)).transpose(1, 2).reshape(b, c, h, w)
        return self.head(x.mean((2, 3)))


# ---- CvT-13 (as Wu et al.'s code: conv token embedding + LN, depthwise-conv + BN then
# linear Q/K/V projections, K/V at stride 2; tokens averaged for the head, as the spec does)
class ConvProjAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads

        def dw(stride):
            return nn.Sequential(nn.Conv2d(dim, dim, 3, stride, 1, groups=dim, bias=False),
                                 nn.BatchNorm2d(dim))

        self.conv_q, self.conv_k, self.conv_v = dw(1), dw(2), dw(2)
        self.proj_q, self.proj_k, self.proj_v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, h, w):  # tokens (B, N, C) of an h x w grid
        b, n, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, h, w)

        def heads(conv, linear):
            return linear(_tokens(conv(grid))).view(b, -1, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.conv_q, self.proj_q),
                                             heads(self.conv_k, self.proj_k),
                                             heads(self.conv_v, self.proj_v))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CvTBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = ConvProjAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))


class CvT(nn.Module):
    def __init__(self, depths=(1, 2, 10), widths=(64, 192, 384), heads=(1, 3, 6),
                 kernels=(7, 3, 3), strides=(4, 2, 2), num_classes=1000):
        super().__init__()
        stages, cin = [], 3
        for d, w, h, k, s in zip(depths, widths, heads, kernels, strides):
            stages.append(nn.ModuleList([nn.Conv2d(cin, w, k, s, k // 2), nn.LayerNorm(w),
                                         nn.ModuleList(CvTBlock(w, h) for _ in range(d))]))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        for embed, norm, blocks in self.stages:
            x = embed(x)
            b, c, h, w = x.shape
            t = norm(_tokens(x))
            for blk in blocks:
                t = blk(t, h, w)
            x = t.transpose(1, 2).reshape(b, c, h, w)
        return self.head(self.norm(x.mean((2, 3))))


#: name -> hand-written version built for an input size
REFERENCES = {
    "convnext_tiny": lambda size: ConvNeXtT(),
    "coatnet_0": lambda size: CoAtNet(size),
    "levit_128s": lambda size: LeViT(size),
    "levit_256": lambda size: LeViT(size, (256, 384, 512), (4, 6, 8), (4, 4, 4), kd=32),
    "swin_tiny": lambda size: SwinT(size),
    "vit_base_patch16": lambda size: ViT(nn.Conv2d(3, 768, 16, 16), size // 16),
    "vit_c_1gf": lambda size: ViT(vit_c_stem((24, 48, 96, 192), 192), size // 16, 192, 11, 3,
                                  3.0),
    "vit_c_4gf": lambda size: ViT(vit_c_stem((48, 96, 192, 384), 384), size // 16, 384, 11, 6,
                                  3.0),
    "maxvit_tiny": lambda size: MaxViT(size),
    "efficientformer_l1": lambda size: EfficientFormer(size),
    "interleaved_s": lambda size: Interleaved(),
    "vit_base_r50_s16": lambda size: ViT(r50_stem(), size // 16),
    "hybrid_vit": lambda size: ViT(seed_conv_stem(), size // 16),
    "coatnet_style": lambda size: CoAtNetStyle(),
    "cvt_13": lambda size: CvT(),
}


# ---------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: --clock: wall time, or the CPU time of the calling thread (one-thread CPU
#: runs only), which leaves out the time a shared machine's other processes
#: hold the core.
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def _alternate(fns: dict, warmup: int, runs: int, device, clock=time.perf_counter) -> dict:
    """Seconds per call of each function over ``runs`` timed rounds, the
    calls of a round alternating in order."""
    times = {k: [] for k in fns}
    for step in range(warmup + runs):
        for key in (list(fns) if step % 2 == 0 else list(fns)[::-1]):
            _sync(device)
            t0 = clock()
            fns[key]()
            _sync(device)
            if step >= warmup:
                times[key].append(clock() - t0)
    return times


def pair_ratios(times: dict) -> list[float]:
    """time(builder) / time(hand-written) over pairs of rounds, sorted. One
    round calls builder then hand-written, the next the reverse, so each pair
    has each implementation once in each position (the second call of a
    round can run warmer or colder than the first) and drift in machine load
    cancels within the pair."""
    b, h = times["builder"], times["hand-written"]
    ratios = sorted((b[i] + b[i + 1]) / (h[i] + h[i + 1]) for i in range(0, len(b) - 1, 2))
    return ratios or [b[0] / h[0]]  # a single round


def median_interval(ratios: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Interval holding the median of the distribution ``ratios`` come from
    with probability at least ``level``, whatever that distribution (the sign
    test's interval): order statistics x_(k) and x_(n+1-k) for the largest k
    with P(k <= B <= n - k) >= level, B ~ Binomial(n, 1/2). None when there
    are too few values for the level (fewer than 6 for 95 %). With 8 pairs
    it is their range: a ratio above 1.0 whose interval still holds 1.0 is a
    tie within this run's noise, not a measured loss."""
    xs = sorted(ratios)
    n, k = len(xs), 0
    while k < n // 2 and sum(math.comb(n, i) for i in range(k + 1, n - k)) / 2 ** n >= level:
        k += 1
    return (xs[k - 1], xs[n - k]) if k else None


def verdict(kind: str, ratios: dict[str, list[float]]) -> str:
    """The summary line for one kind of ratio: the largest median against
    the target, and for every family above it the 95 % interval of its
    median, so a tie within noise reads differently from a measured loss."""
    medians = {name: statistics.median(r) for name, r in ratios.items()}
    worst = max(medians.values())
    line = f"max {kind} ratio {worst:.3f} (target <= 1.0): {'OK' if worst <= 1.0 else 'ABOVE TARGET'}"
    above = []
    for name, r in ratios.items():
        if medians[name] > 1.0:
            interval = median_interval(r)
            if interval is None:
                above.append(f"{name} {medians[name]:.3f} (too few pairs of rounds for an "
                             f"interval: run 12 or more rounds)")
                continue
            lo, hi = interval
            tie = "level within noise" if lo <= 1.0 else "slower beyond noise"
            above.append(f"{name} {medians[name]:.3f} (95 % interval of the median "
                         f"{lo:.3f}-{hi:.3f}: {tie})")
    return line + ("; above 1.0: " + ", ".join(above) if above else "")


def _cell(times: dict, scale: float, fmt: str) -> tuple[str, list[float]]:
    """Both medians in ms, the median pair ratio and its 95 % interval
    (``median_interval``; "few pairs" below six)."""
    ratios = pair_ratios(times)
    interval = median_interval(ratios)
    spread = f"[{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "[few pairs]"
    ours, ref = (statistics.median(times[k]) * scale for k in ("builder", "hand-written"))
    return f"{ours:{fmt}}/{ref:<{fmt}} {statistics.median(ratios):.3f} {spread}", ratios


def _hand_layout(model, x, args):
    """The hand-written model and its input, converted to channels-last with
    ``--hand-channels-last``."""
    if args.hand_channels_last:
        return model.to(memory_format=torch.channels_last), \
            x.contiguous(memory_format=torch.channels_last)
    return model, x


def infer_times(ours, theirs, args, device):
    x = torch.randn(1, 3, args.resolution, args.resolution, device=device)
    models = {"builder": ours.to(device).eval(), "hand-written": theirs.to(device).eval()}
    models["hand-written"], xh = _hand_layout(models["hand-written"], x, args)
    inputs = {"builder": x, "hand-written": xh}

    def call(k):
        m, xk = models[k], inputs[k]

        def f():
            with torch.inference_mode():
                m(xk)
        return f

    return _alternate({k: call(k) for k in models}, args.warmup, args.runs, device,
                      CLOCKS[args.clock])


def train_times(ours, theirs, args, device):
    x = torch.randn(args.batch_size, 3, args.train_resolution, args.train_resolution,
                    device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    models = {"builder": ours.to(device).train(), "hand-written": theirs.to(device).train()}
    models["hand-written"], xh = _hand_layout(models["hand-written"], x, args)
    inputs = {"builder": x, "hand-written": xh}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(k):
        def f():
            opts[k].zero_grad(set_to_none=True)
            F.cross_entropy(models[k](inputs[k]), y).backward()
            opts[k].step()
        return f

    return _alternate({k: step(k) for k in models}, 1, args.train_steps, device, CLOCKS[args.clock])


def _params(m):
    return sum(p.numel() for p in m.parameters()) / 1e6


def macs_ratio(ours, theirs, size, device) -> float:
    """MACs(builder) / MACs(hand-written) of one forward at ``size`` px: 1.000
    when the two are the same network at that size (a ratio of times between
    different networks would mean nothing)."""
    x = torch.randn(1, 3, size, size, device=device)
    with torch.no_grad():
        return (count_macs(ours.to(device).eval(), x)[0]
                / count_macs(theirs.to(device).eval(), x)[0])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="*", default=sorted(REFERENCES))
    p.add_argument("--resolution", type=int, default=224, help="inference input size")
    p.add_argument("--runs", type=int, default=12,
                   help="timed inference rounds per model (12 or more: an interval per ratio)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed calls first; the builder settles its CPU kernel choices "
                        "(timed conv layouts, packed linears) in its first three inference calls")
    p.add_argument("--train-resolution", type=int, default=None,
                   help="default 224 on GPU, 112 on CPU")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on GPU, 4 on CPU")
    p.add_argument("--train-steps", type=int, default=12,
                   help="timed training rounds per model (12 or more: an interval per ratio); "
                        "0 skips training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hand-channels-last", action="store_true",
                   help="convert the hand-written models and their input to channels-last")
    p.add_argument("--plain-linear", action="store_true",
                   help="builder: no packed linear weights in CPU inference "
                        "(blocks.layers.CPU_PACKED_LINEAR = False)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="thread: CPU time of the timing thread (with --device cpu --threads 1), "
                        "steadier than wall time on a machine shared with other jobs")
    args = p.parse_args()
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    if args.clock == "thread" and not (cpu and args.threads == 1):
        p.error("--clock thread times one CPU thread: use it with --device cpu --threads 1")
    args.train_resolution = args.train_resolution or (112 if cpu else 224)
    args.batch_size = args.batch_size or (4 if cpu else 64)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.plain_linear:
        builder_layers.CPU_PACKED_LINEAR = False
    missing = sorted(set(hybridnas.list_models()) - set(REFERENCES) - {"financial_hybrid"})
    print(f"device={device} threads={torch.get_num_threads()}; inference: batch 1, "
          f"{args.resolution} px, {args.runs} rounds; training: batch {args.batch_size}, "
          f"{args.train_resolution} px, {args.train_steps} rounds; {args.clock} clock; "
          f"hand-written models {'channels-last' if args.hand_channels_last else 'as written'}"
          f"{'; builder linears unpacked' if args.plain_linear else ''}")
    print("ratio: median over pairs of rounds of time(builder) / time(hand-written), the two "
          "timed back to back in both orders; [lo-hi]: 95 % interval of that median (the sign "
          "test's; one that holds 1.0 is a tie within this run's noise); target <= 1.0")
    print(f"{'model':<20}{'params M':>12}  {'infer ms  ratio [95 % interval]':<35}"
          f"{'train ms  ratio [95 % interval]':<33}{'MACs ratio':>11}")
    ratios: dict[str, dict[str, list[float]]] = {"inference": {}, "training": {}}
    different = []
    for name in args.models:
        ours = hybridnas.create_model(name)
        theirs = REFERENCES[name](args.resolution)
        sizes = f"{_params(ours):.2f}/{_params(theirs):.2f}"
        text, ratios["inference"][name] = _cell(infer_times(ours, theirs, args, device), 1e3,
                                                "7.1f")
        line = f"{name:<20}{sizes:>12}  {text:<35}"
        same = [macs_ratio(ours, theirs, args.resolution, device)]
        if args.train_steps:
            theirs = REFERENCES[name](args.train_resolution)
            text, ratios["training"][name] = _cell(train_times(ours, theirs, args, device), 1e3,
                                                   "5.0f")
            line += f"{text:<33}"
            same.append(macs_ratio(ours, theirs, args.train_resolution, device))
        else:
            line += " " * 33
        line += f"{'/'.join(f'{r:.3f}' for r in same):>11}"
        if any(abs(r - 1.0) > 1e-3 for r in same):
            different.append(name)
        print(line, flush=True)
    for kind, by_name in ratios.items():
        if by_name:
            print(verdict(kind, by_name))
    print("MACs ratio: builder / hand-written at the inference / training size (1.000: the same "
          "network)")
    if different:
        print(f"NOT THE SAME NETWORK at some size (their time ratios mean nothing): "
              f"{', '.join(different)}")
    if missing:
        print(f"no hand-written version yet: {', '.join(missing)}")


if __name__ == "__main__":
    main()
