"""The design document's systems built exactly: stage downsamplers
(``StageSpec.downsample``), the seed's CoAtNetStyle against its own code,
ResNet bottlenecks (R50+ViT hybrid), Swin's shifted windows and patch
merging. Registry-wide size/forward tests are in test_models.py."""
import math

import pytest
import torch
from torch import nn

import hybridnas
from hybridnas.blocks import Stage
from hybridnas.blocks.downsample import PatchMerging
from hybridnas.blocks.layers import StdConv2d
from hybridnas.blocks.swin import ShiftedSwinBlock, SwinBlock
from hybridnas.blocks.transformer import TokenMixer, shifted_window_mask
from hybridnas.spec import ArchSpec, HeadSpec, SpecError, StageSpec, StemSpec

# arch_id of every architecture registered before stage downsamplers existed:
# the new spec fields must leave them unchanged. coatnet_style was rebuilt on
# purpose (its id before was 4f90f3ee7eaa).
ARCH_IDS = {
    "coatnet_0": "c587990774bb", "convnext_tiny": "19219ca36417", "cvt_13": "0d27a2ba565b",
    "efficientformer_l1": "cce658db76ad", "financial_hybrid": "fb648768b23d",
    "hybrid_vit": "f45adcae0d5c", "interleaved_s": "c8922e81b2a7", "levit_128s": "ad5256002905",
    "levit_256": "1a219be88648", "maxvit_tiny": "c6043cd7a0c6",
    "vit_base_patch16": "5d60ca453a01", "vit_c_1gf": "9dcee3fff2c9", "vit_c_4gf": "fe5b925a5c26",
}


@pytest.mark.parametrize("name", sorted(ARCH_IDS))
def test_existing_arch_ids_are_unchanged(name):
    assert hybridnas.get_spec(name).arch_id == ARCH_IDS[name]


# ---- the seed's CoAtNetStyle, verbatim from the design document ------------

class CoAtNetStyle(nn.Module):
    def __init__(self, img_size=224, num_classes=1000):
        super().__init__()
        self.stage0 = self._make_conv_stage(3, 64, num_blocks=2, stride=2)
        self.stage1 = self._make_conv_stage(64, 128, num_blocks=2, stride=2)
        self.stage2 = self._make_transformer_stage(128, 256, num_blocks=6, stride=2)
        self.stage3 = self._make_transformer_stage(256, 512, num_blocks=2, stride=2)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(512, num_classes)

    def _make_conv_stage(self, in_ch, out_ch, num_blocks, stride):
        layers = [
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.GELU(),
        ]
        for _ in range(num_blocks - 1):
            layers.extend([
                nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.GELU(),
            ])
        return nn.Sequential(*layers)

    def _make_transformer_stage(self, in_dim, out_dim, num_blocks, stride):
        layers = nn.ModuleList()
        layers.append(nn.Sequential(
            nn.Conv2d(in_dim, out_dim, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_dim),
        ))
        for _ in range(num_blocks):
            layers.append(nn.TransformerEncoderLayer(
                d_model=out_dim, nhead=out_dim // 64,
                dim_feedforward=4 * out_dim, dropout=0.1,
                activation='gelu', batch_first=True, norm_first=True,
            ))
        return layers

    def forward(self, x):
        x = self.stage0(x)
        x = self.stage1(x)
        for i, layer in enumerate(self.stage2):
            if i == 0:
                x = layer(x)
                B, C, H, W = x.shape
                x = x.flatten(2).transpose(1, 2)
            else:
                x = layer(x)
        x = x.transpose(1, 2).view(B, -1, H, W)
        for i, layer in enumerate(self.stage3):
            if i == 0:
                x = layer(x)
                B, C, H, W = x.shape
                x = x.flatten(2).transpose(1, 2)
            else:
                x = layer(x)
        x = x.transpose(1, 2)
        x = self.pool(x).squeeze(-1)
        return self.head(x)


def _seed_to_spec_names(seed):
    """Seed state-dict key -> coatnet_style key."""
    out = {}
    for _i, (src, base) in enumerate([("stage0", 0), ("stage1", 6)]):
        for _j, k in enumerate((0, 1, 3, 4)):
            for key in seed.state_dict():
                if key.startswith(f"{src}.{k}."):
                    out[key] = f"stem.{base + k}." + key.split(".", 2)[2]
    names = {"self_attn.in_proj_weight": "mixer.attn.qkv.weight",
             "self_attn.in_proj_bias": "mixer.attn.qkv.bias",
             "self_attn.out_proj.weight": "mixer.attn.proj.weight",
             "self_attn.out_proj.bias": "mixer.attn.proj.bias",
             "linear1.weight": "mlp.fc1.weight", "linear1.bias": "mlp.fc1.bias",
             "linear2.weight": "mlp.fc2.weight", "linear2.bias": "mlp.fc2.bias",
             "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
             "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
    for s, src in enumerate(("stage2", "stage3")):
        for key in seed.state_dict():
            if not key.startswith(src + "."):
                continue
            _, layer, rest = key.split(".", 2)
            if layer == "0":
                out[key] = f"stages.{s}.down.{rest}"
            else:
                out[key] = f"stages.{s}.blocks.{int(layer) - 1}.{names[rest]}"
    out["head.weight"], out["head.bias"] = "fc.weight", "fc.bias"
    return out


def test_coatnet_style_has_the_seed_modules_parameters_and_outputs():
    torch.manual_seed(0)
    seed = CoAtNetStyle().eval()
    ours = hybridnas.create_model("coatnet_style").eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in seed.parameters())
    mapping = _seed_to_spec_names(seed)
    assert len(mapping) == len(seed.state_dict()) == len(ours.state_dict())
    for m in seed.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict({mapping[k]: v for k, v in seed.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - seed(x)).abs().max() < 2e-3  # LayerNorm eps 1e-6 vs PyTorch's 1e-5
        for m in ours.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-5
        torch.testing.assert_close(ours(x), seed(x), atol=1e-5, rtol=1e-4)


# ---- downsample field --------------------------------------------------------

def test_downsample_block_is_the_default_and_parameters_fill_in():
    a = StageSpec("transformer", 2, 64, downsample="block")
    assert a == StageSpec("transformer", 2, 64) and a.downsample is None
    c = StageSpec("transformer", 2, 64, downsample="conv")
    assert (c.down_kernel, c.down_norm) == (3, "bn")
    assert StageSpec("swin", 2, 64, downsample="patch_merge").down_norm == "ln"
    assert ArchSpec.from_dict(
        ArchSpec(stem=StemSpec(widths=(32,)), stages=(c,)).to_dict()).stages[0] == c


@pytest.mark.parametrize("stage,match", [
    (dict(downsample="avg"), "downsample='avg' is not one of"),
    (dict(downsample="pool_proj", down_kernel=3), "down_kernel=3 is not a parameter"),
    (dict(down_norm="bn"), "needs a downsample"),
    (dict(downsample="conv", down_kernel=2), "down_kernel=2 must be odd"),
    (dict(downsample="conv", down_norm="gn"), "down_norm='gn' is not one of"),
])
def test_bad_downsample_fields_are_named(stage, match):
    spec = ArchSpec(stem=StemSpec(widths=(16,)),
                    stages=(StageSpec("transformer", 1, 32, **stage),))
    with pytest.raises(SpecError, match=match):
        spec.validate()


@pytest.mark.parametrize("kind", ["conv", "pool_proj", "patch_merge", "max_pool"])
@pytest.mark.parametrize("block,kw", [("transformer", dict(head_dim=8, attention="global")),
                                      ("mbconv", {}), ("convnext", {}), ("resnet", {}),
                                      ("swin", dict(head_dim=8, window=3))])
def test_every_downsampler_with_every_block_rounds_up(kind, block, kw):
    stage = StageSpec(block, depth=2, width=32, stride=2, downsample=kind, **kw)
    mod = Stage(stage, in_ch=16, drop_paths=[0.0, 0.0]).train()
    assert (kind == "max_pool") == any(isinstance(m, nn.MaxPool2d) for m in mod.down.modules())
    for h, w in [(7, 7), (9, 6), (1, 1)]:
        x = torch.randn(2, 16, h, w, requires_grad=True)
        y = mod(x)
        assert y.shape == (2, 32, math.ceil(h / 2), math.ceil(w / 2)), (kind, block, h, w)
        y.square().mean().backward()
        assert torch.isfinite(x.grad).all()


def test_patch_merging_concatenates_each_patch_in_swins_order():
    pm = PatchMerging(2, 3, stride=2, norm="none")
    x = torch.arange(2 * 4 * 4 * 2, dtype=torch.float32).reshape(2, 4, 4, 2)
    merged = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                       -1)
    torch.testing.assert_close(pm(x), pm.reduction(merged))


# ---- ResNet / R50+ViT --------------------------------------------------------

def test_vit_base_r50_s16_layout():
    spec = hybridnas.get_spec("vit_base_r50_s16")
    assert [s.depth for s in spec.stages[:3]] == [3, 4, 9]
    assert spec.reduction == 16 and spec.pattern == "C-C-C-T"
    model = hybridnas.create_model("vit_base_r50_s16")
    convs = [m for m in (*model.stem.modules(), *model.stages[:3].modules())
             if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, StdConv2d) for m in convs)  # GroupNorm + WS
    assert isinstance(model.stages[0].down, nn.MaxPool2d)
    feats = model.stages[:3](model.stem(torch.randn(1, 3, 224, 224)))
    assert feats.shape == (1, 1024, 14, 14)


def test_weight_standardised_conv_ignores_filter_scale_and_offset():
    conv = StdConv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(1, 4, 5, 5)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(3.0).add_(0.5)
    torch.testing.assert_close(conv(x), y, atol=1e-4, rtol=1e-4)


def test_resnet_block_with_batchnorm_has_torchvision_bottleneck_size():
    # torchvision's Bottleneck(64 -> 256, planes 64, downsample 1x1 + BN): 75,008 parameters
    stage = StageSpec("resnet", depth=1, width=256, stride=1)
    mod = Stage(stage, in_ch=64, drop_paths=[0.0])
    assert sum(p.numel() for p in mod.parameters()) == 75008


# ---- Swin ----------------------------------------------------------------------

def test_swin_stage_alternates_plain_and_shifted_blocks():
    mod = Stage(StageSpec("swin", depth=4, width=32, stride=2, head_dim=8, window=4), 16,
                [0.0] * 4)
    assert [type(b) for b in mod.blocks] == [SwinBlock, ShiftedSwinBlock] * 2
    assert isinstance(mod.down, PatchMerging)


def test_shift_mask_matches_swins_region_mask():
    """On a map that is a multiple of the window, the mask is Swin's own."""
    h = w = 8
    ws, s = 4, 2
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = img.view(1, h // ws, ws, w // ws, ws, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws)
    want = (win[:, None, :] - win[:, :, None]) != 0
    got = shifted_window_mask(h, w, ws, ws, s, s, torch.device("cpu")) < 0
    assert torch.equal(got, want)


def _shifted_reference(mixer, x):
    """Shifted-window attention over the real tokens: each query attends to
    the real keys of its window (after the roll) that came from its region.
    Per axis, a map no larger than the window shrinks it and is not shifted."""
    b, h, w, c = x.shape
    attn, rel = mixer.attn, mixer.rel
    wh, ww = min(mixer.window, h), min(mixer.window, w)
    sh = mixer.shift if h > mixer.window else 0
    sw = mixer.shift if w > mixer.window else 0
    hp, wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
    # rolled-frame coordinates of real cells: (i, j) sits at ((i - sh) % hp, (j - sw) % wp)
    pos = {(i, j): ((i - sh) % hp, (j - sw) % wp) for i in range(h) for j in range(w)}

    def region(r, n, size, shift):  # Swin's three slices along one axis, in the rolled frame
        if not shift:
            return 0
        return 0 if r < n - size else (1 if r < n - shift else 2)

    def key(r, cc):
        return (r // wh, cc // ww, region(r, hp, wh, sh), region(cc, wp, ww, sw))

    table = rel(wh, ww)
    out = torch.zeros(b, h, w, c)
    qkv = attn.qkv(x).view(b, h, w, 3, attn.heads, attn.head_dim)
    for (i, j), (ri, rj) in pos.items():
        keys = [kk for kk, (rk, rl) in pos.items() if key(rk, rl) == key(ri, rj)]
        q = qkv[:, i, j, 0]  # (b, heads, d)
        k = torch.stack([qkv[:, a, bb, 1] for a, bb in keys], 2)  # (b, heads, n, d)
        v = torch.stack([qkv[:, a, bb, 2] for a, bb in keys], 2)
        qi = (ri % wh) * ww + rj % ww
        kidx = torch.tensor([(pos[kk][0] % wh) * ww + pos[kk][1] % ww for kk in keys])
        logits = (q[:, :, None] * k).sum(-1) / math.sqrt(attn.head_dim) + table[:, qi, kidx]
        y = (logits.softmax(-1)[..., None] * v).sum(2).reshape(b, c)
        out[:, i, j] = attn.proj(y)
    return out


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 5), (3, 9), (4, 4)])
def test_shifted_window_attention_matches_per_token_reference(size):
    torch.manual_seed(0)
    mixer = TokenMixer(8, heads=2, window=4, shift=2).eval()
    torch.nn.init.normal_(mixer.rel.table, std=1.0)
    x = torch.randn(2, *size, 8)
    with torch.no_grad():
        got = mixer(x)
        want = _shifted_reference(mixer, x) if max(size) > 4 else TokenMixer.forward(mixer, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_swin_windows_adapt_at_proxy_resolutions():
    model = hybridnas.create_model("swin_tiny", num_classes=10).train()
    for size in (32, 40):  # last stages see 1x1 / 2x2 maps: windows shrink, no shift
        out = model(torch.randn(2, 3, size, size))
        out.logsumexp(-1).mean().backward()
        assert out.shape == (2, 10)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()


# ---- ONNX export of the new named models ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_tiny", "vit_base_r50_s16", "coatnet_style"])
def test_new_named_models_export_to_onnx(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = hybridnas.create_model(name, num_classes=10).eval()
    path = tmp_path / f"{name}.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(model, (torch.randn(2, 3, 64, 64),), str(path), dynamo=True,
                      dynamic_shapes=({0: batch},))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), atol=1e-4, rtol=1e-3)


# ---- the downsampler as a search decision -----------------------------------------

@pytest.mark.parametrize("kind", [None, "conv", "pool_proj", "patch_merge"])
def test_stagewise_downsample_decision_round_trips(kind):
    import dataclasses

    from hybridnas import spaces

    space = spaces.load("stagewise")
    base = hybridnas.get_spec("coatnet_0")
    stages = list(base.stages)
    stages[2] = dataclasses.replace(stages[2], downsample=kind)
    spec = base.replace(stages=tuple(stages), name=None)
    params = space.encode(spec)
    assert params["stages.2.downsample"] == kind
    assert params["stages.1.downsample"] is None  # coatnet_0's own downsampling
    assert space.decode(params) == spec
    if kind is not None:
        assert spec.arch_id != base.arch_id
        # decided per stage: the model has the named module at stage 2
        model = hybridnas.build_model(spec, num_classes=10)
        assert not isinstance(model.stages[2].down, nn.Identity)


def test_downsample_outside_the_choices_is_named():
    import dataclasses

    from hybridnas import spaces

    base = hybridnas.get_spec("coatnet_0")
    stages = list(base.stages)
    stages[2] = dataclasses.replace(stages[2], downsample="max_pool")
    answer = spaces.load("stagewise").contains(base.replace(stages=tuple(stages)))
    assert not answer
    assert "downsample" in answer.reason


# ---- inference fast paths (folded BN, kept attention biases, in-place activations,
# layer scales and residual adds) ----

def _small_hybrid():
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(8, 16), strides=(2, 1)),
        stages=(StageSpec("mbconv", 1, 16, stride=1),
                StageSpec("resnet", 1, 16, stride=1),
                StageSpec("convnext", 1, 16, stride=1, layer_scale=0.5),
                StageSpec("efficientformer", 2, 16, stride=1, attn_blocks=1, heads=2,
                          key_dim=8, window=8, layer_scale=0.5),
                StageSpec("levit", 1, 32, stride=2, heads=2, key_dim=8, window=4),
                StageSpec("transformer", 1, 32, stride=1, head_dim=16, window=4),
                StageSpec("transformer", 1, 32, stride=1, head_dim=16, attention="global"),
                StageSpec("swin", 2, 32, stride=1, head_dim=16, window=2),
                StageSpec("interleaved", 1, 32, stride=1, head_dim=16, attention="window",
                          window=2),
                StageSpec("maxvit", 1, 32, stride=1, head_dim=16, window=2),
                StageSpec("cvt", 1, 32, stride=1, kernel=3, heads=2, head_dim=16)),
        head=HeadSpec(pool="avg", norm="ln"))


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """One thread too: some fast paths (1x1 convs as linears) only run there."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def test_inference_fast_paths_match_the_training_graph_and_follow_updates(threads):
    torch.manual_seed(0)
    model = hybridnas.build_model(_small_hybrid(), num_classes=5)
    assert model.stages[6].blocks[0].fusable  # the ViT block runs as the fused encoder layer
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(4, 3, 16, 16)
    for _ in range(2):
        model.train()
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()  # moves every parameter and BN statistic the caches depend on
        model.eval()
        plain = model(x)  # autograd on: the unfolded graph, nothing cached
        with torch.inference_mode():
            fast = model(x)
        torch.testing.assert_close(fast, plain.detach(), atol=1e-5, rtol=1e-4)
        assert len(model.stem._folded) == 2  # the stem's two conv-BN pairs ran folded
    state = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    plain = model(x)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain.detach(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # same tensor objects and versions, new storage
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.data = t.data * 1.1
    plain = model(x)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain.detach(), atol=1e-5, rtol=1e-4)


def test_residual_adds_in_place_only_into_a_branch_laid_out_as_its_shortcut():
    from hybridnas.blocks.layers import fresh_scale, layer_scale, residual
    maps = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    keep = maps.clone()
    for branch, in_place in ((torch.randn(2, 8, 5, 5), False),  # channels first
                             (torch.randn(2, 8, 5, 5).contiguous(
                                 memory_format=torch.channels_last), True),
                             (torch.randn(2, 8, 1, 1).expand(2, 8, 5, 5), False)):  # overlapping
        want = maps + branch
        with torch.no_grad():
            got = residual(maps, branch)
        torch.testing.assert_close(got, want)
        assert (got is branch) == in_place
        assert got.stride() == want.stride()
        torch.testing.assert_close(maps, keep)  # the shortcut is never written
    ls = layer_scale(8, 0.5, channels_last=False)
    with torch.no_grad():
        fresh = torch.randn(2, 8, 5, 5)
        want = fresh * 0.5
        scaled = fresh_scale(ls, fresh)
        assert scaled is fresh
        torch.testing.assert_close(scaled, want)
    graded = torch.randn(2, 8, 5, 5)  # autograd on: a new tensor, the input untouched
    assert fresh_scale(ls, graded) is not graded
    low = torch.randn(2, 8, 5, 5, dtype=torch.bfloat16)  # autocast's output: promoted, as ls(x)
    with torch.no_grad():
        scaled = fresh_scale(ls, low)
    assert scaled is not low and scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, ls(low).detach())


def test_inference_fast_paths_run_module_hooks(threads):
    """A conv or norm with forward hooks (pruning remakes its weight in one)
    is called as a module in inference, not by the fast paths' direct kernel
    calls: outputs match the training graph's and the hooks run."""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    spec = ArchSpec(
        stem=StemSpec(kind="conv", widths=(8, 16), strides=(2, 1)),
        stages=(StageSpec("mbconv", 1, 16, stride=1),
                StageSpec("convnext", 1, 32, stride=2, layer_scale=0.5),
                StageSpec("efficientformer", 1, 32, stride=1, layer_scale=0.5),
                StageSpec("levit", 1, 32, stride=1, heads=2, key_dim=8, window=4),
                StageSpec("transformer", 1, 32, stride=1, head_dim=16, attention="global")),
        head=HeadSpec(pool="avg", norm="ln"))
    model = hybridnas.build_model(spec, num_classes=5).eval()
    vit = model.stages[4].blocks[0]
    assert vit.fusable  # unhooked, it would run as PyTorch's fused encoder layer
    mb = model.stages[0].blocks[0]
    convs = [mb.conv3, mb.conv1, model.stages[1].down.conv,  # and LeViT's BN-linear, a ViT MLP's:
             model.stages[2].blocks[0].mlp[0], model.stem[0], model.stages[3].blocks[0].attn.qkv[0],
             vit.mlp.fc1]
    for conv in convs:
        prune.l1_unstructured(conv, "weight", amount=0.5)
    calls = []
    for conv in convs:
        conv.register_forward_hook(lambda m, args, out: calls.append(m))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model(x)  # settles timed choices and kept weights
        for conv in convs:  # a new mask: the pre-hook remakes the weight from it
            conv.weight_mask.copy_(torch.rand_like(conv.weight_mask) < 0.5)
        calls.clear()
        fast = model(x)
    assert len(calls) == len(convs)  # each hooked conv was called as a module
    torch.testing.assert_close(fast, model(x).detach(), atol=1e-5, rtol=1e-4)
