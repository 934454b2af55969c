"""Generated from the registries: every block and every named architecture."""
import pytest
import torch

import hybridnas
from hybridnas.blocks import BLOCKS
from hybridnas.blocks.base import unlink
from hybridnas.spec import BLOCK_SCHEMAS, ArchSpec, StageSpec, StemSpec
from hybridnas.complexity import count_size
from hybridnas.zoo import get_named

NAMES = hybridnas.list_models()
PUBLISHED = [n for n in NAMES if get_named(n).params_m]


def test_block_registry_matches_schemas():
    assert set(BLOCKS) == set(BLOCK_SCHEMAS)


@pytest.mark.parametrize("name", NAMES)
def test_stored_size_equals_a_fresh_count(name):
    """`hybridnas models` prints the stored sizes: they must be what fvcore counts today."""
    fresh = count_size(name)
    assert get_named(name).counted == fresh, (
        f"{name}: stored counted={get_named(name).counted}, a fresh count gives {fresh}: "
        f"update its register(..., counted=({fresh[0]:_}, {fresh[1]:_}))")


@pytest.mark.parametrize("name", PUBLISHED)
def test_named_architecture_matches_published_size(name):
    named = get_named(name)  # the stored count, checked against a fresh one above
    params, macs = named.counted
    assert abs(params / 1e6 - named.params_m) <= 0.02 * named.params_m, (
        f"{name}: {params / 1e6:.2f} M params vs published {named.params_m}")
    if named.gmacs:  # some papers publish no MAC count at this resolution
        assert abs(macs / 1e9 - named.gmacs) <= 0.10 * named.gmacs, (
            f"{name}: {macs / 1e9:.3f} GMACs vs published {named.gmacs}")


def test_list_models_filters_with_wildcards():
    assert hybridnas.list_models("coat*") == ["coatnet_0", "coatnet_style"]
    assert hybridnas.list_models("VIT_C_?GF") == ["vit_c_1gf", "vit_c_4gf"]
    assert hybridnas.list_models("nothing*") == []
    assert hybridnas.list_models() == NAMES


def test_models_command_lists_stored_sizes_without_counting(monkeypatch, capsys):
    from hybridnas import complexity
    from hybridnas.cli import main

    def no_count(name):
        raise AssertionError(f"counted {name} again")

    monkeypatch.setattr(complexity, "count_size", no_count)
    assert main(["models", "levit*"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()][:-1]
    assert rows == ["levit_128s", "levit_256"]
    assert "7.78" in out and "0.308" in out  # levit_128s: 7,776,530 params, 308 M MACs
    assert main(["models", "nothing*"]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_named_architecture_forward_backward_full_size(name):
    named = get_named(name)
    if named.spec.dims != 2:
        pytest.skip("1-D architectures are covered by the temporal tests")
    torch.manual_seed(0)
    model = hybridnas.create_model(name)
    # Two samples: BatchNorm cannot train on one value per channel (LeViT's BN head).
    x = torch.randn(2, 3, named.resolution, named.resolution)
    out = model(x)
    assert out.shape == (2, 1000)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_named_architecture_at_proxy_size(name, size):
    named = get_named(name)
    if named.spec.dims != 2:
        pytest.skip("1-D architectures are covered by the temporal tests")
    problems = named.spec.problems(size)
    if problems:  # too many stride-2 steps for this size: the spec must say which one
        assert "below 1x1" in problems[0]
        pytest.skip(problems[0])
    model = hybridnas.create_model(name, num_classes=10)
    model.train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.logsumexp(-1).mean().backward()
    feats = model.forward_features(torch.randn(2, 3, size, size))  # BN on 1x1 maps needs 2
    expected = named.spec.stage_resolutions(size)[-1]
    if feats.ndim == 4:
        assert feats.shape[1] == model.feature_info[-1]["num_chs"]
        assert tuple(feats.shape[2:]) == expected


def test_feature_info_and_reset_classifier():
    model = hybridnas.create_model("coatnet_0", num_classes=10)
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in model.feature_info] == [96, 192, 384, 768]
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 768)


def test_create_model_from_spec_file(tmp_path):
    spec = hybridnas.get_spec("vit_c_1gf")
    path = tmp_path / "vit.yaml"
    spec.save(str(path))
    model = hybridnas.create_model(str(path), num_classes=5)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_drop_path_is_active_only_in_training():
    spec = ArchSpec(stem=StemSpec(kind="patchify", widths=(16,), kernel=4),
                    stages=(StageSpec("convnext", 4, 16, stride=1),))
    model = hybridnas.build_model(spec, num_classes=4, drop_path_rate=0.5)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    rates = [b.drop_path.p for b in model.stages[0].blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)


@pytest.mark.parametrize("key", sorted(BLOCK_SCHEMAS))
def test_each_block_alone_at_odd_sizes(key):
    """Every registered block builds in a one-stage net and runs on odd grids."""
    schema = BLOCK_SCHEMAS[key]
    if 2 not in schema.dims:
        pytest.skip("no 2-D version")
    kw = {}
    if key == "levit":
        kw = dict(heads=2)
    if key == "cvt":
        kw = dict(heads=2)
    stage = StageSpec(key, depth=2, width=32, stride=2, **kw)
    spec = ArchSpec(stem=StemSpec(kind="conv", widths=(16,), strides=(1,)), stages=(stage,))
    model = hybridnas.build_model(spec, num_classes=3)
    for size in (7, 9, 15):
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 3)
        assert torch.isfinite(out).all()
        # Every downsampler rounds up, as the spec's own arithmetic does.
        feats = model.forward_features(torch.randn(2, 3, size, size))
        assert tuple(feats.shape[2:]) == spec.stage_resolutions(size)[-1], (key, size)


def test_models_command_does_not_import_torch():
    """What keeps `hybridnas models` fast: no model is built, torch is never loaded."""
    import subprocess
    import sys

    code = ("import sys; from hybridnas.cli import main; main(['models']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def _small_attention_run():
    """Three channels-last stages in a row, as the spaces generate them."""
    return ArchSpec(stem=StemSpec(kind="conv", widths=(16,), strides=(2,)), stages=(
        StageSpec("transformer", 1, 32, stride=2, heads=2, attention="rel", window=4),
        StageSpec("swin", 2, 32, stride=2, heads=2, window=2),
        StageSpec("transformer", 1, 64, stride=2, heads=2)))


@pytest.mark.parametrize("name,size", [("coatnet_0", 32), ("levit_128s", 32), ("swin_tiny", 32),
                                       ("small", 15)])
def test_linked_stages_compute_what_unlinked_stages_do(name, size):
    """Consecutive channels-last stages hand maps on without converting them
    (no copies at the boundary) and give the same output and gradients as
    stages that each take and return channels-first maps."""
    torch.manual_seed(0)
    if name == "small":
        model = hybridnas.build_model(_small_attention_run(), num_classes=4)
    else:
        model = hybridnas.create_model(name, num_classes=4)
    model.train()
    linked = [(s.takes, s.gives) for s in model.stages]
    assert linked[0][0] == "nchw" and linked[-1][1] == "nchw"  # forward_features' contract
    assert any(t != "nchw" for t, _ in linked)
    x = torch.randn(2, 3, size, size)
    params = list(model.parameters())
    out = model(x)
    grads = torch.autograd.grad(out.square().sum(), params)
    unlink(model.stages)
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    assert torch.equal(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


@pytest.mark.parametrize("name,size", [("coatnet_0", 32), ("convnext_tiny", 64),
                                       ("maxvit_tiny", 32), ("interleaved_s", 32)])
def test_cpu_maps_run_channels_last_and_compute_the_same(name, size, monkeypatch):
    """On the CPU the builder keeps maps channels-last (``layers.cpu_maps``),
    which speeds up oneDNN's convolutions; outputs and gradients must be those
    of the channels-first network, and the convs must really see
    channels-last maps (a depthwise conv too large for oneDNN's channels-last
    kernels gets channels-first input: ``depthwise_input``)."""
    from torch import nn

    from hybridnas.blocks import layers

    torch.manual_seed(0)
    # float64: training-mode BatchNorm over a batch of tiny maps amplifies
    # float32 rounding differences between the two layouts' kernels.
    model = hybridnas.create_model(name, num_classes=4).double().train()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    params = list(model.parameters())
    seen = []

    def layout(mod, args):
        x = args[0]
        if x.shape[-1] * x.shape[-2] > 1 and mod.in_channels > 1:  # else both layouts coincide
            seen.append((mod, x.is_contiguous(memory_format=torch.channels_last)
                         and not x.is_contiguous(), x.numel()))

    hooks = [m.register_forward_pre_hook(layout) for m in model.modules()
             if isinstance(m, nn.Conv2d)]

    def run():
        seen.clear()
        out = model(x)
        return out, torch.autograd.grad(out.square().sum(), params), list(seen)

    out, grads, laid = run()
    if model.spec.stem.kind == "patchify":  # takes the image as it is (faster channels-first)
        assert laid[0][0] is model.stem[0] and not laid[0][1]
        laid = laid[1:]
    big = [m for m, _, _ in laid if m.groups == m.in_channels > 1
           and m.weight.numel() >= layers.DEPTHWISE_CHANNELS_FIRST_MIN
           and m.kernel_size[0] * m.kernel_size[1] > 9]
    # dense kxk convs with more weights than input values: channels first (dense_conv)
    wide = [m for m, _, n in laid if m.groups == 1 and m.kernel_size != (1, 1)
            and m.weight.numel() > layers.DENSE_CHANNELS_FIRST_RATIO * n]
    assert laid and all(last for m, last, _ in laid if m not in big + wide), name
    assert not any(last for m, last, _ in laid if m in big + wide)
    if name == "convnext_tiny":
        assert big, "ConvNeXt-T's last stage (7x7 over 768 channels) takes channels-first input"
        assert wide, "ConvNeXt-T's last downsampler (2x2, 384 -> 768 over 4x4 maps) too"
    monkeypatch.setattr(layers, "CPU_CHANNELS_LAST", False)
    ref, ref_grads, laid = run()
    assert not all(last for _, last, _ in laid)  # channels-first maps again
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    for h in hooks:
        h.remove()


def test_depthwise_input_layout_rule():
    from torch import nn

    from hybridnas.blocks.layers import depthwise_input

    def laid(channels, kernel, ndim=4):
        conv = nn.Conv2d(channels, channels, kernel, groups=channels) if ndim == 4 else \
            nn.Conv1d(channels, channels, kernel, groups=channels)
        x = torch.randn(1, channels, *([5] * (ndim - 2)))
        if ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = depthwise_input(conv, x)
        assert torch.equal(y, x)
        return "nchw" if y.is_contiguous() else "nhwc"

    assert laid(768, 7) == "nchw"  # 37,632 weights, 7x7
    assert laid(640, 7) == "nhwc"  # 31,360 weights: below the threshold
    assert laid(1536, 5) == "nchw"
    assert laid(8192, 3) == "nhwc"  # 3x3 kernels run well channels-last at any width
    assert laid(768, 7, ndim=3) == "nchw"  # 1-D maps are left as they are (contiguous)
    with torch.no_grad():  # the slow kernel is the backward: inference stays channels-last
        assert laid(768, 7) == "nhwc"


def test_dense_conv_runs_wide_convs_channels_first_while_training():
    """``dense_conv``: a kxk conv with more than DENSE_CHANNELS_FIRST_RATIO
    times as many weights as its input has values runs channels-first while
    training, hands its output back channels-last and its input's gradient
    back in the input's order; values and gradients are the conv's."""
    from torch import nn

    from hybridnas.blocks import layers

    torch.manual_seed(0)
    seen = []
    hook = lambda mod, args: seen.append(args[0].is_contiguous())  # noqa: E731

    def run(cin, cout, k, size, grad=True):
        conv = nn.Conv2d(cin, cout, k, 2, k // 2)
        handle = conv.register_forward_pre_hook(hook)
        x = torch.randn(2, cin, size, size).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            out = layers.dense_conv(conv, x)
            ref = conv._conv_forward(x.detach().contiguous(), conv.weight, conv.bias)
        handle.remove()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        if grad:
            g = torch.randn_like(out)
            (gx,) = torch.autograd.grad(out, x, g)
            x2 = x.detach().requires_grad_()
            (ref_gx,) = torch.autograd.grad(conv(x2), x2, g)
            torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-5)
            assert gx.is_contiguous(memory_format=torch.channels_last) and not gx.is_contiguous()
        return "nchw" if seen[-1] else "nhwc"  # (the hook: dense_conv calls the module)

    # 3x3 256 -> 512 over 4x4 maps: 1.2M weights against 8K values
    assert run(256, 512, 3, 4) == "nchw"
    assert run(256, 512, 3, 4, grad=False) == "nhwc"  # without autograd: as given
    assert run(16, 32, 3, 16) == "nhwc"  # 4.6K weights against 8K values
    assert run(256, 512, 1, 4) == "nhwc"  # 1x1: the same weight in either order
    # at the threshold: weights = 2x the values stays channels-last
    ratio = layers.DENSE_CHANNELS_FIRST_RATIO
    assert run(8, 8 * ratio, 2, 4) == "nhwc"  # 16 * 8 * 2 * 2 = 512 weights, 2 * 8 * 4 * 4 = 256 values
    assert run(8, 8 * ratio + 1, 2, 4) == "nchw"
    grouped = nn.Conv2d(256, 512, 3, groups=2)
    x = torch.randn(1, 256, 4, 4).contiguous(memory_format=torch.channels_last)
    assert layers.dense_conv(grouped, x).is_contiguous(memory_format=torch.channels_last)
    # a channels-first map (a GroupNorm block's) stays channels-first
    wide = nn.Conv2d(256, 512, 3, padding=1)
    assert layers.dense_conv(wide, torch.randn(1, 256, 4, 4)).is_contiguous()
    # torch.func transforms and forward-mode AD run through the layout change
    from torch.autograd import forward_ad
    from torch.func import functional_call, grad

    seq = layers.ConvSequence(wide)  # its training forward calls dense_conv
    params = dict(seq.named_parameters())
    x = torch.randn(1, 256, 4, 4).contiguous(memory_format=torch.channels_last)
    g = grad(lambda p: functional_call(seq, p, (x,)).square().sum())(params)
    ref = grad(lambda p: torch.nn.functional.conv2d(x, p["0.weight"], p["0.bias"], padding=1)
               .square().sum())(params)
    torch.testing.assert_close(g["0.bias"], ref["0.bias"], rtol=1e-4, atol=1e-3)
    t = torch.randn_like(x)
    with forward_ad.dual_level():
        out = seq(forward_ad.make_dual(x, t))
        tangent = forward_ad.unpack_dual(out).tangent
    torch.testing.assert_close(tangent, wide._conv_forward(t, wide.weight, None), rtol=1e-4,
                               atol=1e-4)


def test_relayout_sends_the_gradient_back_in_the_input_order():
    """``contiguous`` passes the gradient through in whatever order it comes;
    ``relayout`` turns it back into its input's order."""
    from hybridnas.blocks.layers import relayout

    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = relayout(x, torch.contiguous_format)
    assert y.is_contiguous() and torch.equal(y, x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous()
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    y = relayout(x, torch.channels_last)
    (g,) = torch.autograd.grad(y, x, torch.randn_like(y).contiguous(memory_format=torch.channels_last))
    assert g.is_contiguous()


def test_group_norm_resnet_block_trains_channels_first():
    """A GroupNorm ResNet block takes channels-first maps while training on
    the CPU (PyTorch's channels-last GroupNorm is the slower there), keeps
    channels-last in inference and with BatchNorm; values and gradients are
    those of the other layout."""
    from hybridnas.blocks import layers
    from hybridnas.blocks.resnet import ResNetBottleneck

    torch.manual_seed(0)
    for norm in ("gn", "bn"):
        stage = StageSpec(block="resnet", depth=1, width=64, norm=norm, act="relu")
        block = ResNetBottleneck(32, stage, stride=2).double()
        seen = []
        block.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()))
        x = torch.randn(2, 32, 8, 8, dtype=torch.float64).contiguous(
            memory_format=torch.channels_last).requires_grad_()
        out = block(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        plain = x.detach().contiguous().requires_grad_()
        ref = block(plain)
        (ref_grad,) = torch.autograd.grad(ref.square().sum(), plain)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grad, ref_grad)
        assert seen[0] is (norm == "gn")  # channels first for GroupNorm only
        block.eval()
        with torch.no_grad():
            block(x.detach())
        assert seen[-1] is False  # inference: channels-last as given
    assert layers.group_norm_input(torch.nn.GroupNorm(4, 8), torch.randn(1, 8, 3)).ndim == 3


class _Always(dict):
    """A decision table that answers ``choice`` for every shape."""

    def __init__(self, choice):
        super().__init__()
        self.choice = choice

    def get(self, key, default=None):
        return self.choice


def test_timed_conv_runs_each_shape_in_its_faster_layout(monkeypatch):
    """In plain inference a stem conv is timed in both memory layouts once per
    shape and then runs in the one kept; values are the conv's either way."""
    from torch import nn

    from hybridnas.blocks import layers
    from hybridnas.blocks.layers import ConvSequence

    monkeypatch.setattr(layers, "_CONV_LAYOUTS", {})
    torch.manual_seed(0)
    stem = ConvSequence(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                    nn.Conv2d(8, 16, 3, 2, 1)).eval()
    stem[1].running_mean.uniform_(-1, 1)
    stem[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = nn.Sequential(*stem)(x)  # eager modules, no folding or timing
        out = stem(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    kept = {k[4]: v for k, v in layers._CONV_LAYOUTS.items()}
    assert set(kept) == {(2, 3, 16, 16), (2, 8, 8, 8)}  # one timing per conv shape
    with torch.no_grad():
        stem(x)
    assert len(layers._CONV_LAYOUTS) == 2  # kept: not timed again

    for layout in (False, True):  # the layout kept is the one the conv runs in
        monkeypatch.setattr(layers, "_CONV_LAYOUTS", _Always(layout))  # every shape kept so
        with torch.no_grad():
            out = stem(x)
        assert out.is_contiguous(memory_format=torch.channels_last if layout else
                                 torch.contiguous_format)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(layers, "_CONV_LAYOUTS", {})
    with torch.no_grad():  # each new input size is timed
        stem(torch.randn(1, 3, 12, 12).contiguous(memory_format=torch.channels_last))
    assert {k[4] for k in layers._CONV_LAYOUTS} == {(1, 3, 12, 12), (1, 8, 6, 6)}
    stem(x)  # training graph: plain convs, nothing timed
    assert len(layers._CONV_LAYOUTS) == 2


def test_timed_conv_keeps_its_weight_in_the_layout_it_runs(monkeypatch):
    """A conv kept channels-last gets its (folded) weight in channels-last
    order once, not copied on every call, and anew when the weight changes;
    so does ``dense_conv`` in inference."""
    from torch import nn

    from hybridnas.blocks import layers
    from hybridnas.blocks.layers import ConvSequence

    monkeypatch.setattr(layers, "_CONV_LAYOUTS", _Always(True))
    torch.manual_seed(0)
    stem = ConvSequence(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, 1, 1)).eval()
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        stem(x)
        kept = [m.__dict__["_laid_out"][torch.channels_last][2] for m in (stem[0], stem[3])]
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in kept)
        stem(x)
        again = [m.__dict__["_laid_out"][torch.channels_last][2] for m in (stem[0], stem[3])]
        assert all(a is b for a, b in zip(again, kept))  # not copied again
        stem[0].weight.mul_(2.0)  # an optimizer-style in-place update
        stem[3].weight.add_(1.0)
        out = stem(x)
    ref = nn.Sequential(*stem)(x)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)
    assert stem[3].__dict__["_laid_out"][torch.channels_last][2] is not kept[1]

    down = nn.Conv2d(3, 8, 2, 2)  # dense_conv (ConvNeXt's downsampler) in inference: the same
    with torch.no_grad():
        for _ in range(2):
            out = layers.dense_conv(down, x)
            torch.testing.assert_close(out, down(x.contiguous()), rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert down.__dict__["_laid_out"][torch.channels_last][2].is_contiguous(
            memory_format=torch.channels_last)


def test_weight_standardised_conv_keeps_its_weights_in_inference():
    """StdConv2d standardises its weights once in plain inference and again
    after they change; outputs equal the per-call standardisation's."""
    from hybridnas.blocks.layers import StdConv2d

    torch.manual_seed(0)
    conv = StdConv2d(4, 6, 3, padding=1)
    calls = []
    standardise = conv._standardise
    conv._standardise = lambda: calls.append(1) or standardise()
    x = torch.randn(1, 4, 7, 7)
    ref = conv(x).detach()  # autograd records: standardised on every call
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref)
        torch.testing.assert_close(conv(x), ref)
    assert len(calls) == 2  # once for the training call, once for both inference calls
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))  # an optimizer step or load_state_dict
        again = conv(x)
    assert len(calls) == 3
    assert not torch.allclose(again, ref)
    torch.testing.assert_close(again, conv(x).detach())


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("act", [None, "gelu", "relu", "hardswish", "silu", "tanh", "identity"])
def test_packed_linear_equals_the_plain_linear(monkeypatch, act):
    """In plain CPU inference a linear may run on a packed weight with its
    activation fused: the values must be ``act(F.linear(...))``'s, whichever
    way the timing picks; training and autograd run the plain linear."""
    import torch.nn.functional as F

    from hybridnas.blocks import layers

    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
    torch.manual_seed(0)
    fc = layers.Linear(24, 40)
    act_mod = layers.make_act(act) if act else None
    x = torch.randn(3, 7, 24)
    ref = F.linear(x, fc.weight, fc.bias)
    ref = act_mod(ref) if act_mod is not None else ref
    for choice in (True, False):
        monkeypatch.setattr(layers, "_LINEAR_PACKED", _Always(choice))
        fc.__dict__.pop("_packed", None)
        with torch.inference_mode():
            for _ in range(3):
                torch.testing.assert_close(fc(x, act_mod), ref, rtol=1e-5, atol=1e-5)
            assert layers.packed_for(fc, x) is choice
        assert (fc._packed.packed is not None) is choice  # no packed copy kept when unused
    out = fc(x, act_mod)  # autograd records: the plain linear, a gradient flows
    assert out.requires_grad
    torch.testing.assert_close(out.detach(), ref.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_pointwise_conv_runs_as_a_packed_linear_on_channels_last_maps(monkeypatch):
    """A 1x1 conv on a channels-last CPU map runs in plain inference as a
    linear layer over the pixels (packed, activation fused, when timed so),
    with the conv's values, output channels-last, and its packed weight
    remade when the weight changes; elsewhere it is the conv."""
    from hybridnas.blocks import layers

    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
    monkeypatch.setattr(layers, "_LINEAR_PACKED", _Always(True))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # where PyTorch itself would not run oneDNN's conv
    try:
        _pointwise_conv_checks(layers)
    finally:
        torch.set_num_threads(threads)


def _pointwise_conv_checks(layers):
    from torch import nn

    torch.manual_seed(0)
    conv, act = nn.Conv2d(8, 24, 1), nn.GELU()
    x = torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last)

    def ref():
        return act(conv(x)).detach()

    with torch.no_grad():
        for _ in range(3):
            out = layers.pointwise_conv(conv, x, conv.weight, conv.bias, act)
            torch.testing.assert_close(out, ref(), rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert conv._packed.packed is not None  # ran packed, GELU fused
        conv.weight.mul_(-1.5)  # an optimizer-style in-place update
        torch.testing.assert_close(layers.pointwise_conv(conv, x, conv.weight, conv.bias, act),
                                   ref(), rtol=1e-5, atol=1e-5)
        layers.pointwise_conv(conv, x, conv.weight, conv.bias, act)
        slot = conv._packed
        kept = (slot.weight, slot.call, slot.packed)
        assert slot.packed is not None  # packed again for the new weight
        first = x.contiguous()  # channels-first: the conv itself, the slot untouched
        torch.testing.assert_close(layers.pointwise_conv(conv, first, conv.weight, conv.bias),
                                   conv(first), rtol=1e-5, atol=1e-5)
        assert (slot.weight, slot.call, slot.packed) == kept
        big = torch.randn(16, 8, 5, 6).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(layers.pointwise_conv(conv, big, conv.weight, conv.bias),
                                   conv(big), rtol=1e-5, atol=1e-5)  # batch 16: oneDNN's conv
        assert (slot.weight, slot.call, slot.packed) == kept
    out = layers.pointwise_conv(conv, x, conv.weight, conv.bias, act)  # autograd: the conv
    assert out.requires_grad
    torch.testing.assert_close(out.detach(), ref(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_packed_linear_follows_its_weight(monkeypatch):
    """A weight is packed on its second call and packed again after any
    change (in place, ``load_state_dict``, ``.data =``); tensors made anew
    each call (the supernet's views under ``functional_call``) are never
    packed; a deep copy of a packed module works; each shape is timed once."""
    import copy

    import torch.nn.functional as F

    from hybridnas.blocks import layers

    monkeypatch.setattr(layers, "_LINEAR_PACKED", {})
    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 16 * 32 * 5)  # x's size: packable
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 5)
    torch.manual_seed(0)
    fc = layers.Linear(16, 32)
    x = torch.randn(1, 5, 16)
    reorders = []
    reorder = torch.ops.mkldnn._reorder_linear_weight
    monkeypatch.setattr(layers, "_reorder", lambda w: reorders.append(1) or reorder(w, None))
    timed = []
    faster = layers.faster
    monkeypatch.setattr(layers, "faster", lambda a, b: timed.append(1) or faster(a, b) or True)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(fc(x), F.linear(x, fc.weight, fc.bias))

    check()
    assert not reorders  # first sight: plain
    check()
    check()
    assert len(reorders) == 1 and len(timed) == 1
    with torch.no_grad():
        assert layers.packed_for(fc, x)
    with torch.no_grad():
        fc.weight.mul_(2)  # an optimizer step
    check()
    check()
    fc.load_state_dict({"weight": torch.randn(32, 16), "bias": torch.randn(32)})
    check()
    check()
    fc.weight.data = torch.randn(32, 16)  # same tensor object and version, new storage
    check()
    check()
    assert len(reorders) == 4 and len(timed) == 1  # repacked each time, timed once
    clone = copy.deepcopy(fc)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), fc(x))
    for _ in range(4):  # a new view of the weight each call, as functional_call passes
        with torch.no_grad():
            params = {"weight": fc.weight[:, :16] * 1.0, "bias": fc.bias}
            torch.testing.assert_close(torch.func.functional_call(fc, params, (x,)),
                                       F.linear(x, params["weight"], fc.bias))
    assert len(reorders) == 4
    small = torch.randn(1, 4, 16)  # under PACKED_MIN_MACS: plain, nothing packed or timed
    fresh = layers.Linear(16, 32)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(fresh(small), F.linear(small, fresh.weight, fresh.bias))
        torch.testing.assert_close(fc(small), F.linear(small, fc.weight, fc.bias))
        assert layers.packed_for(fresh, small) is False
    assert "_packed" not in fresh.__dict__
    monkeypatch.setattr(layers, "CPU_PACKED_LINEAR", False)
    with torch.no_grad():  # switched off: the plain linear
        torch.testing.assert_close(fc(x), F.linear(x, fc.weight, fc.bias))
    assert len(reorders) == 4 and len(timed) == 1


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_linear_over_few_rows_runs_plain(monkeypatch):
    """Under ``PACKED_MIN_ROWS`` rows (batch times tokens) a linear runs
    plain, never timed or packed, however many multiply-adds it has; at the
    minimum it is timed and packed as usual."""
    import torch.nn.functional as F

    from hybridnas.blocks import layers

    monkeypatch.setattr(layers, "_LINEAR_PACKED", {})
    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 8)
    timed = []
    monkeypatch.setattr(layers, "faster", lambda a, b: timed.append(1) or True)
    torch.manual_seed(0)
    fc = layers.Linear(16, 32)
    few, enough = torch.randn(1, 7, 16), torch.randn(2, 4, 16)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(fc(few), F.linear(few, fc.weight, fc.bias))
        assert not timed and layers.packed_for(fc, few) is False
        assert "_packed" not in fc.__dict__
        for _ in range(3):
            torch.testing.assert_close(fc(enough), F.linear(enough, fc.weight, fc.bias),
                                       rtol=1e-5, atol=1e-5)
        assert timed == [1] and layers.packed_for(fc, enough)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_kept_weights_never_outlive_the_values_they_came_from(monkeypatch):
    """``p.data = a; p.data = b`` between calls (b may land at the address of
    the storage a replaced, with the same version) and a weight changed while
    another call is packing it (another thread's optimizer step and forward)
    never leave a packed or BN-folded copy of the old values in use."""
    import torch.nn.functional as F

    from hybridnas.blocks import layers
    from hybridnas.blocks.levit import BNLinear

    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
    monkeypatch.setattr(layers, "_LINEAR_PACKED", _Always(True))
    torch.manual_seed(0)
    fc, bn = layers.Linear(64, 64), BNLinear(64, 64).eval()
    x = torch.randn(64, 64)
    with torch.no_grad():
        for _ in range(10):
            for _ in range(3):
                fc(x)
                bn(x)
            fc.weight.data = torch.randn(64, 64)
            fc.weight.data = torch.randn(64, 64)
            bn[0].weight.data = torch.randn(64, 64)
            bn[0].weight.data = torch.randn(64, 64)
            torch.testing.assert_close(fc(x), F.linear(x, fc.weight, fc.bias))
            torch.testing.assert_close(bn(x), bn[1](bn[0](x)), rtol=1e-5, atol=1e-5)

    fc = layers.Linear(64, 64)
    reorder, stepped = layers._reorder, []

    def packing_while_stepped(w):
        packed = reorder(w)
        if not stepped:  # meanwhile: an optimizer step, then a forward
            stepped.append(1)
            fc.weight.mul_(2)
            fc(x)
        return packed

    monkeypatch.setattr(layers, "_reorder", packing_while_stepped)
    with torch.no_grad():
        for _ in range(4):
            torch.testing.assert_close(fc(x), F.linear(x, fc.weight, fc.bias))
    assert stepped


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_packed_linear_edge_cases(monkeypatch):
    """No stale weights for a model built under inference mode (its weights
    change in place without a version), a packed module pickles, autocast
    keeps its dtype, and a BN-folded weight made in inference mode is packed."""
    import io
    import pickle

    import torch.nn.functional as F

    from hybridnas.blocks import layers
    from hybridnas.blocks.levit import BNLinear

    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
    monkeypatch.setattr(layers, "_LINEAR_PACKED", _Always(True))
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        fc = layers.Linear(16, 32)  # inference-tensor parameters
        for _ in range(3):
            fc(x)
        fc.weight.copy_(torch.randn(32, 16))  # load_state_dict inside inference mode
        torch.testing.assert_close(fc(x), F.linear(x, fc.weight, fc.bias))
        bn = BNLinear(16, 32).eval()
        bn[1].running_mean.uniform_(-1, 1)
        for _ in range(3):
            bn(x)
        bn[1].running_mean.zero_()
        torch.testing.assert_close(bn(x), bn[1](bn[0](x)), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        made_inside = layers.Linear(16, 32)
        assert layers.packed_for(made_inside, x) is False  # never packed, asked before any call
        made_inside(x)
        assert layers.packed_for(made_inside, x) is False
    fc = layers.Linear(16, 32)
    bn = BNLinear(16, 32).eval()
    with torch.inference_mode():
        for _ in range(3):
            fc(x)
            bn(x)
        assert layers.packed_for(fc, x) and bn.__dict__["_packed"].packed is not None
        ref = fc(x)
    for copy in (pickle.loads(pickle.dumps(fc)), torch.load(io.BytesIO(_saved(fc)),
                                                            weights_only=False)):
        with torch.no_grad():
            torch.testing.assert_close(copy(x), ref)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert {fc(x).dtype for _ in range(3)} == {torch.bfloat16}


def _saved(module) -> bytes:
    import io
    buf = io.BytesIO()
    torch.save(module, buf)
    return buf.getvalue()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_vit_block_under_functional_call_still_chooses(monkeypatch):
    """Under ``functional_call`` (the supernet) a ViT block's weights are new
    views each call, never packed; the block still times fused against
    written out and runs the pick."""
    from hybridnas.blocks import layers, transformer
    from hybridnas.blocks.transformer import TransformerBlock

    monkeypatch.setattr(layers, "PACKED_MIN_MACS", 0)
    monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
    monkeypatch.setattr(transformer, "_FUSED_FASTER", {})
    monkeypatch.setattr(transformer, "faster", lambda a, b: True)
    torch.manual_seed(0)
    stage = StageSpec(block="transformer", depth=1, width=32, heads=2, attention="global",
                      norm="ln", act="gelu")
    block = TransformerBlock(32, stage).eval()
    x = torch.randn(2, 10, 32)
    ref = block(x).detach()
    ran = []
    fused = block._fused
    monkeypatch.setattr(block, "_fused", lambda x: ran.append("fused") or fused(x))
    with torch.inference_mode():
        for _ in range(3):
            views = {n: p[:] for n, p in block.named_parameters()}
            torch.testing.assert_close(torch.func.functional_call(block, views, (x,)), ref,
                                       rtol=1e-5, atol=1e-5)
    assert ran and list(transformer._FUSED_FASTER.values()) == [True]
    assert block.mixer.attn.qkv.__dict__["_packed"].packed is None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_vit_block_runs_the_faster_of_fused_and_written_out(monkeypatch):
    """A ViT block in CPU inference runs written out (packed linears) until
    its linears have decided, then the faster of that and the fused encoder
    layer, timed once per shape; the two give the block's values."""
    from hybridnas.blocks import layers, transformer
    from hybridnas.blocks.transformer import TransformerBlock

    torch.manual_seed(0)
    stage = StageSpec(block="transformer", depth=1, width=32, heads=2, attention="global",
                      norm="ln", act="gelu")
    block = TransformerBlock(32, stage).eval()
    x = torch.randn(2, 10, 32)
    ref = block(x).detach()  # autograd records: written out, nothing packed or timed
    ran = []
    ways = {"fused": block._fused, "written": block._written}
    for way, f in ways.items():
        monkeypatch.setattr(block, f"_{way}", lambda x, way=way, f=f: ran.append(way) or f(x))
    for fused in (True, False):
        monkeypatch.setattr(transformer, "faster", lambda a, b, fused=fused: fused)
        for small in (False, True):  # linears big enough to pack, or not
            monkeypatch.setattr(layers, "PACKED_MIN_MACS", 1 << 30 if small else 0)
            monkeypatch.setattr(layers, "PACKED_MIN_ROWS", 0)
            monkeypatch.setattr(transformer, "_FUSED_FASTER", {})
            ran.clear()
            block.mixer.attn.qkv.__dict__.pop("_packed", None)
            with torch.inference_mode():
                for _ in range(4):
                    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)
            if not small:  # the linears decide first (first sight, then packing)
                assert ran[:2] == ["written", "written"]
                ran[:2] = []
            assert set(ran) == {"fused" if fused else "written"}
            assert list(transformer._FUSED_FASTER.values()) == [fused]


def test_attention_written_out_while_training_matches_the_fused_kernel():
    """``attend`` writes biased attention out while training on the CPU
    (faster there than the fused kernel); values and gradients must be the
    fused kernel's, with per-head and per-window (grouped) biases."""
    import torch.nn.functional as F

    from hybridnas.blocks.layers import attend, attention_written_out

    torch.manual_seed(0)
    for n, bias_shape in ((16, (2, 16, 16)), (9, (3, 2, 9, 9)), (64, (1, 2, 64, 64))):
        q, k, v = (torch.randn(6, 2, n, 8, requires_grad=True) for _ in range(3))
        bias = torch.randn(*bias_shape, requires_grad=True)
        assert attention_written_out(q, k, v, bias)
        leaves = [q, k, v, bias]
        out = attend(q, k, v, bias)
        grads = torch.autograd.grad(out.square().sum(), leaves)
        full = bias.unsqueeze(0) if bias.ndim == 3 else \
            bias.unsqueeze(0).expand(6 // bias.shape[0], *bias.shape).reshape(6, *bias.shape[1:])
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
        ref_grads = torch.autograd.grad(ref.square().sum(), leaves)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    # without a bias the fused kernel is level or faster on the heads views blocks make
    q = torch.randn(1, 16, 2, 8, requires_grad=True).transpose(1, 2)
    assert not attention_written_out(q, q, q)
    with torch.no_grad():
        assert not attention_written_out(q, q, q, torch.zeros(1, 16, 16))  # inference



def test_faster_times_pairs_in_alternating_order_and_picks_the_quicker():
    """``layers.faster`` times one call of each way per round, the order
    alternating between rounds, and picks the way with the lower median
    time ratio, whichever side it is on."""
    import time

    from hybridnas.blocks import layers

    calls: list[str] = []

    def spin(name: str, seconds: float):
        def run():
            calls.append(name)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return run

    quick, slow = spin("quick", 0.0005), spin("slow", 0.0015)
    assert layers.faster(slow, quick) is True
    rounds = calls[2:]  # after one untimed call each
    firsts = {rounds[i] for i in range(0, len(rounds), 2)}
    assert len(rounds) >= 12 and len(rounds) % 2 == 0 and firsts == {"quick", "slow"}
    calls.clear()
    assert layers.faster(quick, slow) is False
