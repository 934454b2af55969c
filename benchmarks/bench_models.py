"""Training-step throughput of builder models vs hand-written PyTorch.

Compares, side by side in one run, forward + backward + SGD step images/s of
  - the seed's HybridViT (nn.TransformerEncoder) vs ``create_model("hybrid_vit")``
  - a hand-written ConvNeXt-T vs ``create_model("convnext_tiny")``
Timing alternates between the two implementations step by step so drift in
machine load hits both equally. Target: ratio (builder / hand-written) >= 0.95.

    python benchmarks/bench_models.py                 # CPU defaults (small batch/resolution)
    python benchmarks/bench_models.py --resolution 224 --batch-size 64 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import hybridnas


# ---------------------------------------------------------------- hand-written
class ConvStem(nn.Module):
    def __init__(self, in_channels=3, embed_dim=768):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, 3, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, embed_dim, 3, 2, 1, bias=False), nn.BatchNorm2d(embed_dim),
        )

    def forward(self, x):
        return self.stem(x).flatten(2).transpose(1, 2)


class HybridViT(nn.Module):
    """The seed document's HybridViT, with dropout 0 (the spec has none)."""

    def __init__(self, img_size=224, num_classes=1000, embed_dim=768, depth=12, num_heads=12):
        super().__init__()
        self.conv_stem = ConvStem(3, embed_dim)
        num_patches = (img_size // 16) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads,
                                           dim_feedforward=4 * embed_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.conv_stem(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.encoder(x))
        return self.head(x[:, 0])


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
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], w, 2, 2)]
            layers += [ConvNeXtBlock(w) for _ in range(d)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))


# ---------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(name, ours, theirs, args, device):
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    models = {"builder": ours.to(device).train(), "hand-written": theirs.to(device).train()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4) for k, m in models.items()}
    times = {k: [] for k in models}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    for step in range(args.warmup + args.steps):
        for key in (list(models) if step % 2 == 0 else list(models)[::-1]):
            model, opt = models[key], opts[key]
            _sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            _sync(device)
            if step >= args.warmup:
                times[key].append(time.perf_counter() - t0)
    rate = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    ratio = rate["builder"] / rate["hand-written"]
    print(f"{name:<14} builder {rate['builder']:8.1f} img/s  hand-written {rate['hand-written']:8.1f} "
          f"img/s  ratio {ratio:.3f}  (params {n_params['builder'] / 1e6:.2f}M vs "
          f"{n_params['hand-written'] / 1e6:.2f}M)")
    return ratio


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="default 224 on GPU, 96 on CPU")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on GPU, 8 on CPU")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    args.resolution = args.resolution or (96 if cpu else 224)
    args.batch_size = args.batch_size or (8 if cpu else 64)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device={device} resolution={args.resolution} batch={args.batch_size} "
          f"threads={torch.get_num_threads()} steps={args.steps} (median step time)")
    ratios = {
        "hybrid_vit": compare("hybrid_vit", hybridnas.create_model("hybrid_vit"),
                              HybridViT(img_size=args.resolution), args, device),
        "convnext_tiny": compare("convnext_tiny", hybridnas.create_model("convnext_tiny"),
                                 ConvNeXtT(), args, device),
    }
    worst = min(ratios.values())
    print(f"min ratio {worst:.3f} (target >= 0.95): {'OK' if worst >= 0.95 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
