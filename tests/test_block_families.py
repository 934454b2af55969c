"""Block-level behaviour of the MaxViT, CvT, LeViT and EfficientFormer families:
odd and 1x1 grids, shrink attention, window/grid padding masks, stage
variants, and the named models at proxy sizes. Registry-wide size checks are
in test_models.py."""
import math

import pytest
import torch

import hybridnas
from hybridnas.blocks import Stage
from hybridnas.blocks.cvt import ConvAttention, conv_embedding
from hybridnas.blocks.efficientformer import Meta3D, Meta4D
from hybridnas.blocks.levit import OffsetAttention, ShrinkBlock
from hybridnas.blocks.maxvit import MaxViTBlock
from hybridnas.blocks.transformer import TokenMixer
from hybridnas.spec import StageSpec

FAMILIES = {
    "maxvit": dict(head_dim=8, window=3),
    "cvt": dict(heads=2, kernel=3),
    "levit": dict(heads=3, key_dim=8, window=4),
    "efficientformer": dict(attn_blocks=1, heads=2, key_dim=8, window=4),
}
MY_MODELS = ["maxvit_tiny", "cvt_13", "levit_128s", "levit_256", "efficientformer_l1"]


def _stage(key, stride=2, depth=2, width=24, **kw):
    return StageSpec(key, depth=depth, width=width, stride=stride, **{**FAMILIES[key], **kw})


@pytest.mark.parametrize("key", sorted(FAMILIES))
@pytest.mark.parametrize("stride", [1, 2])
def test_stage_runs_on_odd_and_single_cell_grids(key, stride):
    torch.manual_seed(0)
    spec = _stage(key, stride=stride)
    stage = Stage(spec, in_ch=16, drop_paths=[0.0, 0.1]).train()
    for h, w in [(7, 7), (9, 9), (1, 1), (7, 9)]:
        x = torch.randn(2, 16, h, w, requires_grad=True)
        y = stage(x)
        assert y.shape == (2, 24, math.ceil(h / stride), math.ceil(w / stride)), (key, h, w)
        y.square().mean().backward()
        assert torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
        grads = [p.grad for p in stage.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        stage.zero_grad()


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_stage_in_eval_mode_handles_one_sample_on_a_1x1_grid(key):
    stage = Stage(_stage(key), in_ch=16, drop_paths=[0.0, 0.0]).eval()
    y = stage(torch.randn(1, 16, 1, 1))
    assert y.shape == (1, 24, 1, 1) and torch.isfinite(y).all()


# ---- window / grid attention with padding masks ----------------------------

def _window_members(h, w, window, grid):
    """Explicit (row, col) coordinates of each attention window, padded positions
    included, in the order partition() lays tokens out within a window."""
    wh, ww = min(window, h), min(window, w)
    nh, nw = math.ceil(h / wh), math.ceil(w / ww)
    groups = []
    for a in range(nh):
        for b in range(nw):
            if grid:  # token (i, j) of group (a, b) sits at (i * nh + a, j * nw + b)
                groups.append([(i * nh + a, j * nw + b) for i in range(wh) for j in range(ww)])
            else:
                groups.append([(a * wh + i, b * ww + j) for i in range(wh) for j in range(ww)])
    return groups, wh, ww


def _reference_window_attention(mixer, x, window, grid):
    """Attention computed window by window over the real tokens only."""
    attn, rel = mixer.attn, mixer.rel
    b, h, w, c = x.shape
    out = torch.zeros(b, h, w, c)
    groups, wh, ww = _window_members(h, w, window, grid)
    table = rel(wh, ww)  # (heads, wh*ww, wh*ww) over local positions
    for coords in groups:
        keep = [t for t, (r, s) in enumerate(coords) if r < h and s < w]
        rows = torch.tensor([coords[t][0] for t in keep])
        cols = torch.tensor([coords[t][1] for t in keep])
        tokens = x[:, rows, cols]  # (B, n, C)
        n = tokens.shape[1]
        q, k, v = attn.qkv(tokens).view(b, n, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        idx = torch.tensor(keep)
        logits = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim) + table[:, idx][:, :, idx]
        y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        out[:, rows, cols] = attn.proj(y)
    return out


@pytest.mark.parametrize("grid", [False, True], ids=["block", "grid"])
@pytest.mark.parametrize("size", [(14, 14), (9, 9), (9, 16), (5, 3)])
def test_window_and_grid_attention_match_per_window_reference(grid, size):
    """Divisible sizes need no mask; padded ones must give exactly what
    attention over the real tokens of each window gives."""
    torch.manual_seed(0)
    mixer = TokenMixer(16, heads=2, window=7, grid=grid).eval()
    torch.nn.init.normal_(mixer.rel.table, std=1.0)  # make the bias matter
    x = torch.randn(2, *size, 16)
    with torch.no_grad():
        got = mixer(x)
        want = _reference_window_attention(mixer, x, 7, grid)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_grid_attention_mixes_across_the_map_and_block_attention_locally():
    # 14x14 map, window 7: (13, 13) shares its 7x7 block with (12, 12) and its
    # grid group (same row and column parity) with (1, 1).
    torch.manual_seed(0)
    x = torch.randn(1, 14, 14, 8)
    x2 = x.clone()
    x2[0, 13, 13] += 10.0
    for grid in (False, True):
        mixer = TokenMixer(8, heads=1, window=7, grid=grid).eval()
        with torch.no_grad():
            delta = (mixer(x2) - mixer(x)).abs().sum(-1)[0]
        assert (delta[1, 1] > 1e-6) == grid
        assert (delta[12, 12] > 1e-6) == (not grid)


# ---- LeViT ----------------------------------------------------------------

def _offset_reference(att, x):
    """Shrink attention written out: explicit query positions and |offset| bias."""
    b, h, w, _ = x.shape
    s, kd, vd, nh = att.q_stride, att.key_dim, att.value_dim, att.heads
    kv = att.kv(x).reshape(b, h * w, nh, kd + vd).transpose(1, 2)
    k, v = kv[..., :kd], kv[..., kd:]
    qpos = [(r, c) for r in range(0, h, s) for c in range(0, w, s)]
    kpos = [(r, c) for r in range(h) for c in range(w)]
    xq = torch.stack([x[:, r, c] for r, c in qpos], dim=1)
    q = att.q(xq).reshape(b, len(qpos), nh, kd).transpose(1, 2)
    res = att.bias.resolution
    idx = torch.tensor([[min(abs(r1 - r2), res - 1) * res + min(abs(c1 - c2), res - 1)
                         for r2, c2 in kpos] for r1, c1 in qpos])
    logits = q @ k.transpose(-1, -2) * kd ** -0.5 + att.bias.table[:, idx]
    y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, len(qpos), nh * vd)
    qh, qw = math.ceil(h / s), math.ceil(w / s)
    return att.proj(att.act(y)).reshape(b, qh, qw, -1)


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (5, 9), (1, 1)])
def test_shrink_attention_subsamples_queries(size):
    torch.manual_seed(0)
    att = OffsetAttention(16, heads=2, key_dim=8, value_dim=16, resolution=6, out_dim=24,
                          q_stride=2, act="hardswish").eval()
    torch.nn.init.normal_(att.bias.table, std=1.0)
    for m in att.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, *size, 16)
    with torch.no_grad():
        got = att(x)
        want = _offset_reference(att, x)
    assert got.shape == (2, math.ceil(size[0] / 2), math.ceil(size[1] / 2), 24)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_levit_stage_starts_with_shrink_and_allows_depth_zero():
    spec = StageSpec("levit", depth=0, width=32, stride=2, heads=3, key_dim=8, window=4)
    stage = Stage(spec, in_ch=16, drop_paths=[])
    assert isinstance(stage.down, ShrinkBlock)
    assert stage.down.attn.heads == 16 // 8  # LeViT: in_width / key_dim heads
    y = stage(torch.randn(2, 16, 9, 9))
    assert y.shape == (2, 32, 5, 5)
    # stride 1 and an unchanged width: no shrink unit
    same = Stage(StageSpec("levit", depth=1, width=16, stride=1, heads=3, key_dim=8), 16, [0.0])
    assert isinstance(same.down, torch.nn.Identity)


# ---- CvT ------------------------------------------------------------------

@pytest.mark.parametrize("kernel,stride", [(7, 4), (3, 2), (3, 1), (4, 4), (2, 2)])
def test_conv_embedding_output_is_ceil_of_input_over_stride(kernel, stride):
    emb = conv_embedding(3, 8, kernel, stride)
    for n in (1, 5, 9, 30, 32):
        assert emb(torch.randn(1, 3, n, n)).shape[-1] == math.ceil(n / stride), (kernel, stride, n)


def test_cvt_attention_has_fewer_keys_than_queries(monkeypatch):
    from hybridnas.blocks import cvt

    att = ConvAttention(16, heads=2, kv_stride=2).eval()
    seen = {}
    orig = cvt.attend

    def spy(q, k, v, *args):
        seen["q"], seen["k"] = q.shape, k.shape
        return orig(q, k, v, *args)

    monkeypatch.setattr(cvt, "attend", spy)
    y = att(torch.randn(2, 9, 9, 16))
    assert y.shape == (2, 9, 9, 16)
    assert seen["q"] == (2, 2, 81, 8) and seen["k"] == (2, 2, 25, 8)


# ---- EfficientFormer / MaxViT ----------------------------------------------

def test_efficientformer_stage_ends_with_attn_blocks_meta3d():
    spec = StageSpec("efficientformer", depth=4, width=16, stride=2, attn_blocks=2, heads=2,
                     key_dim=8, window=4)
    stage = Stage(spec, in_ch=8, drop_paths=[0.0] * 4)
    assert [type(b) for b in stage.blocks] == [Meta4D, Meta4D, Meta3D, Meta3D]
    assert spec.letter == "I"
    assert stage(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)
    all_attn = StageSpec("efficientformer", depth=2, width=16, attn_blocks=2, heads=2, key_dim=8)
    assert all_attn.letter == "T"


def test_meta4d_pool_mixer_is_zero_on_a_constant_map():
    block = Meta4D(16, StageSpec("efficientformer", depth=1, width=16), stride=1).eval()
    x = torch.full((1, 16, 5, 7), 3.0)
    assert torch.allclose(block.pool(x) - x, torch.zeros_like(x), atol=1e-6)


def test_maxvit_se_width_is_relative_to_the_output_width():
    spec = StageSpec("maxvit", depth=1, width=64, stride=2, se_ratio=0.25)
    block = MaxViTBlock(32, spec, stride=2)
    assert block.conv.se.fc1.out_channels == 16  # 64 * 0.25, MaxViT/timm
    assert block.conv.conv1.out_channels == 256  # expansion 4 of the output width


# ---- named models at proxy sizes ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", MY_MODELS)
def test_named_model_at_28_or_a_clear_reason(name):
    spec = hybridnas.get_spec(name)
    problems = spec.problems(28)
    if problems:
        assert "below 1x1" in problems[0] and "stages[" in problems[0]
        with pytest.raises(hybridnas.SpecError, match="below 1x1"):
            spec.validate(28)
        return
    torch.manual_seed(0)
    model = hybridnas.create_model(name, num_classes=10).train()
    out = model(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 10)
    out.logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    feats = model.eval().forward_features(torch.randn(1, 3, 28, 28))
    assert tuple(feats.shape[2:]) == spec.stage_resolutions(28)[-1]


def test_levit_explains_why_it_cannot_run_at_32():
    msg = hybridnas.get_spec("levit_128s").problems(32)[0]
    assert msg.startswith("stages[2].stride=2") and "below 1x1" in msg


@pytest.mark.slow
def test_padded_window_and_grid_attention_export_to_onnx(tmp_path):
    """A map that is not a multiple of the window (masked padding) still
    exports with a dynamic batch and matches eager in ONNX Runtime; the
    index tables the mixers make are not kept during export (torch.export
    warns about tensors assigned to a module while exporting)."""
    import warnings

    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    mixer = torch.nn.Sequential(TokenMixer(16, heads=2, window=3),
                                TokenMixer(16, heads=2, window=3, grid=True)).eval()
    path = tmp_path / "mixer.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(mixer, (torch.randn(2, 5, 5, 16),), str(path), dynamo=True,
                          dynamic_shapes=({0: batch},))
    assert not [w for w in caught if "assigned during export" in str(w.message)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 5, 5, 16)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), mixer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_stage_on_gpu_with_autocast(key):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    stage = Stage(_stage(key), in_ch=16, drop_paths=[0.0, 0.1]).cuda().train()
    x = torch.randn(4, 16, 9, 9, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = stage(x)
    y.float().square().mean().backward()
    torch.cuda.synchronize()
    assert y.shape == (4, 24, 5, 5)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in stage.parameters())


@pytest.mark.parametrize("case", ["none", "per_head", "per_window", "wide_values"])
def test_attend_is_softmax_attention_with_the_bias(case):
    # attend hands biased attention to SDPA (per-head bias as a 4-D mask, a
    # bias per window expanded over the batch) or writes it out when the
    # values are wider than the keys: all equal the formula.
    from hybridnas.blocks.layers import attend

    g = torch.Generator().manual_seed(0)
    b, heads, n, d = 6, 3, 10, 8
    dv = 2 * d if case == "wide_values" else d
    q, k = torch.randn(b, heads, n, d, generator=g), torch.randn(b, heads, n, d, generator=g)
    v = torch.randn(b, heads, n, dv, generator=g)
    bias = {"none": None, "per_head": torch.randn(heads, n, n, generator=g),
            "per_window": torch.randn(3, heads, n, n, generator=g),
            "wide_values": torch.randn(heads, n, n, generator=g)}[case]
    logits = q @ k.transpose(-2, -1) / math.sqrt(d)
    if case == "per_window":  # batch laid out as (b / 3) images x 3 windows
        logits = (logits.view(-1, 3, heads, n, n) + bias).view(b, heads, n, n)
    elif bias is not None:
        logits = logits + bias
    torch.testing.assert_close(attend(q, k, v, bias), logits.softmax(-1) @ v, atol=1e-5, rtol=1e-4)
