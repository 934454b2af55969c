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
