"""The supernet: every point of a space is a subnet, and the extracted
network computes exactly what the supernet computes for it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hybridnas.errors import UserError
from hybridnas.supernet import Supernet, max_abs_diff

SPACES = ("stagewise", "interleaved", "vit_stem")
# Small proxy: 16 px, an eighth of the widths, a quarter of the depths.
PROXY = dict(resolution=16, num_classes=10, in_chans=1, width_mult=0.125, depth_mult=0.25)


@pytest.fixture(scope="module", params=SPACES)
def supernet(request):
    torch.manual_seed(0)
    return Supernet(request.param, **PROXY)


def _check(net: Supernet, spec, x: torch.Tensor) -> float:
    """Max |supernet(x) - extract(spec)(x)| in eval mode after recalibration."""
    net.recalibrate_bn(spec, [torch.randn_like(x), x])
    net.eval()
    with torch.no_grad():
        y = net.activate(spec)(x)
        model = net.extract(spec)
        return max_abs_diff(y, model(x))


def _sampled(net: Supernet, n: int, first_seed: int = 0) -> list:
    specs = [net.largest, net.smallest] + [net.sample(first_seed + i) for i in range(n)]
    assert len({s.arch_id for s in specs}) > 0.8 * len(specs)
    return specs


def test_extracted_equals_active_forward(supernet):
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert max(_check(supernet, s, x) for s in _sampled(supernet, 10)) <= 1e-5


@pytest.mark.slow
def test_extracted_equals_active_forward_for_50_samples(supernet):
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert max(_check(supernet, s, x) for s in _sampled(supernet, 50, 1000)) <= 1e-5


def test_named_architectures_are_subnets(supernet):
    refs = supernet.space.references(16)
    assert refs, "every shipped 2-D space names reference architectures"
    x = torch.randn(2, 1, 16, 16)
    for name, spec in refs.items():
        assert supernet.space.contains(spec), name
        assert _check(supernet, spec, x) <= 1e-5, name


def test_subnets_share_weights_and_slices_are_views(supernet):
    # A weight update of the shared tensors changes the extracted subnet:
    # the subnet holds views of the supernet's tensors, not copies.
    spec = supernet.smallest
    before = supernet.extract(spec).state_dict()
    with torch.no_grad():
        for p in supernet.weights.values():
            p.add_(0.5)
    after = supernet.extract(spec).state_dict()
    with torch.no_grad():
        for p in supernet.weights.values():
            p.sub_(0.5)
    changed = [k for k in before if before[k].is_floating_point() and
               not torch.equal(before[k], after[k])]
    assert changed


def test_gradients_reach_only_the_active_branch():
    net = Supernet("interleaved", **PROXY)
    net.train()
    spec = net.smallest
    net.activate(spec)(torch.randn(2, 1, 16, 16)).sum().backward()
    used = {k for k, p in net.weights.items() if p.grad is not None}
    assert used and len(used) < len(net.weights)
    deepest_block = max(int(k.split("/")[4]) for k in net.weights.keys()
                        if k.startswith("stages/2/") and "/blocks/" in k)
    assert not any(k.startswith("stages/2/") and f"/blocks/{deepest_block}/" in k for k in used)


def test_kernel_is_the_centre_of_the_largest_kernel():
    # Without the learned transform a 3x3 depthwise kernel is the centre of
    # the shared 7x7 one (Once-for-All's elastic kernel).
    net = Supernet("interleaved", kernel_transform=False, **PROXY)
    spec = net.space.sample(3)
    stage = spec.stages[0]
    spec = spec.replace(stages=(dataclasses.replace(stage, kernel=3), *spec.stages[1:]))
    model = net.extract(spec)
    shared = net.weights["stages/0/interleaved/blocks/0/dwconv/weight"]
    k = shared.shape[-1]
    off = (k - 3) // 2
    got = model.stages[0].blocks[0].dwconv.weight
    assert torch.equal(got, shared[:got.shape[0], :, off:off + 3, off:off + 3].detach())


def test_hybrid_zoo_is_refused_with_the_reason():
    with pytest.raises(UserError, match="levit.*previous stage"):
        Supernet("hybrid_zoo", **PROXY)


def test_spec_outside_the_supernet_is_refused():
    net = Supernet("interleaved", **PROXY)
    spec = net.largest
    st = spec.stages[0]
    wider = dataclasses.replace(st, width=st.width * 4, head_dim=st.width * 4 // st.heads)
    wide = spec.replace(stages=(wider, *spec.stages[1:]))
    with pytest.raises(UserError, match="needs tensor"):
        net.activate(wide)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPACES)
def test_extraction_at_a_larger_proxy(name):
    net = Supernet(name, resolution=32, num_classes=10, in_chans=3, width_mult=0.25)
    x = torch.randn(2, 3, 32, 32)
    specs = _sampled(net, 50, 100) + list(net.space.references(32).values())
    assert max(_check(net, s, x) for s in specs) <= 1e-5


def test_sandwich_ends_cover_every_block_family_at_its_extremes(supernet):
    """Type-path subnets: paths are drawn uniformly (a late convolution stage
    is as likely as a late attention stage), every draw is a valid network
    the supernet runs, the ends' widths are the extremes of their family at
    that stage, and the middle draws are points of the space."""
    import numpy as np

    from hybridnas.supernet.train import SandwichSettings, _subnets

    rng = np.random.default_rng(0)
    x = torch.randn(2, 1, 16, 16)
    his = [supernet.sandwich_end(True, rng) for _ in range(12)]
    los = [supernet.sandwich_end(False, rng) for _ in range(12)]
    mids = [supernet.sandwich_end(None, rng) for _ in range(12)]
    for spec in his[:2] + los[:2] + mids[:2]:
        assert supernet.activate(spec)(x).shape == (2, 10)
    assert all(supernet.space.check(s) for s in mids)
    points = [supernet.sample(k) for k in range(30)]
    for s in his + los:  # widths round per block family (and stem) at a proxy
        for i in range(len(s.stages)):
            same = [p.stages[i].width for p in points if len(p.stages) == len(s.stages)
                    and p.stages[i].block == s.stages[i].block and p.stem.kind == s.stem.kind]
            if same and s in his:
                assert s.stages[i].width >= max(same), (i, s.stages[i].block)
            elif same:
                assert s.stages[i].width <= min(same), (i, s.stages[i].block)
    if "stages.3.block" in {d.label for d in supernet.space.dimensions}:
        last = [s.stages[-1].block for s in his + los + mids]
        assert sum(b in ("mbconv", "convnext") for b in last) >= 3, last  # late convolution

    fixed = _subnets(supernet, SandwichSettings(ends="fixed", random_subnets=0), 0, 0)
    assert fixed == [supernet.largest, supernet.smallest]
    drawn = _subnets(supernet, SandwichSettings(ends="types", random_subnets=2), 0, 0)
    assert drawn[0] == supernet.largest and len(drawn) == 4  # the teacher stays the largest
    assert drawn == _subnets(supernet, SandwichSettings(ends="types", random_subnets=2), 0, 0)


def test_unknown_sandwich_ends_are_refused():
    from hybridnas.supernet.train import SandwichSettings

    with pytest.raises(UserError, match="ends"):
        SandwichSettings(ends="middle")


def test_a_classifier_after_a_hidden_layer_has_its_own_weights():
    """A classifier reading tanh(hidden) and one reading the pooled features
    see different inputs: sharing one would train it for neither (every
    subnet without the hidden layer scored at chance with inherited weights)."""
    from hybridnas.spec import HeadSpec
    from hybridnas.supernet.elastic import head_key

    direct, hidden = HeadSpec(hidden=0), HeadSpec(hidden=16)
    assert head_key(direct, "fc.weight") != head_key(hidden, "fc.weight")
    assert head_key(hidden, "fc.weight") == head_key(HeadSpec(hidden=32), "fc.weight")
    assert head_key(direct, "head_norm.weight") == head_key(hidden, "head_norm.weight")
    assert head_key(direct, "pre_logits.0.weight") == head_key(hidden, "pre_logits.0.weight")


def test_patch_merging_slices_every_cell_alike():
    """Patch merging's last dimension is (cell, channel): a narrower input
    takes the leading channels of every cell, so cell 1 of a narrow subnet
    reads cell 1's weights of the wide one, not cell 0's last channels."""
    from hybridnas.blocks.downsample import PatchMerging
    from hybridnas.supernet.elastic import SliceContext, find_rule

    wide, narrow = PatchMerging(8, 6, 2), PatchMerging(4, 6, 2)
    rule, owner = find_rule(narrow, "reduction.weight")
    shared = wide.reduction.weight.detach()
    got = rule(shared, tuple(narrow.reduction.weight.shape), SliceContext(narrow, "k", {}))
    assert got.shape == (6, 16)
    for cell in range(4):
        assert torch.equal(got[:, cell * 4:(cell + 1) * 4], shared[:, cell * 8:cell * 8 + 4])
    # and the merged network still computes what its extraction computes
    x = torch.randn(3, 5, 5, 4)
    narrow.reduction.weight.data.copy_(got)
    narrow.norm.weight.data.copy_(rule(wide.norm.weight.detach(), (16,),
                                       SliceContext(narrow, "k", {})))
    assert narrow(x).shape == (3, 3, 3, 6)


def _labelled(n: int, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, :, :8].mean(dim=(1, 2, 3)) > 0).long()
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def test_refit_classifier_fits_the_subnets_own_features():
    """The refitted classifier is the ridge solution on the subnet's
    features (so it beats an untrained shared one on the data it saw), it is
    what eval-mode forward and extract use, and training drops it."""
    torch.manual_seed(0)
    net = Supernet("stagewise", **PROXY)
    spec = net.sample(3)
    batches = _labelled(256)
    net.recalibrate_bn(spec, [x for x, _ in batches])
    net.eval()
    x_all = torch.cat([x for x, _ in batches])
    y_all = torch.cat([y for _, y in batches])
    with torch.no_grad():
        before = (net.activate(spec)(x_all).argmax(-1) == y_all).float().mean()
    assert net.refit_classifier(spec, batches, 10)
    net.eval()
    with torch.no_grad():
        out = net.activate(spec)(x_all)
        after = (out.argmax(-1) == y_all).float().mean()
        extracted = net.extract(spec)(x_all)
    assert after > before and after > 0.4  # 4 classes of a fixed rule of the input
    assert max_abs_diff(out, extracted) <= 1e-5
    assert out[:, 4:].abs().max() < out[:, :4].abs().max()  # unseen classes get no weight
    net.train()
    with torch.no_grad():
        net.eval()
        assert max_abs_diff(net.activate(spec)(x_all), out) > 1e-3  # the shared one again


def test_evaluation_refits_only_when_asked():
    from hybridnas.data.tasks import ClassificationTask
    from hybridnas.supernet.train import SandwichSettings, prepare_subnet

    torch.manual_seed(0)
    net = Supernet("stagewise", **PROXY)
    spec = net.sample(5)
    batches = _labelled(64)
    prepare_subnet(net, spec, batches, SandwichSettings(refit_classifier=False),
                   ClassificationTask(10))
    assert not net._classifiers
    prepare_subnet(net, spec, batches, SandwichSettings(), ClassificationTask(10))
    assert spec.arch_id in net._classifiers


def test_a_stage_downsampler_is_shared_by_every_block_type():
    """A stage-start downsampler's tensors depend only on the widths around
    it, so patch merging into stage 1 is one branch whatever block type the
    stage holds (a branch per pair trained on a fifth of the steps); the
    block's own tensors stay apart."""
    from hybridnas.builder import build_model
    from hybridnas.spec import StageSpec
    from hybridnas.supernet.elastic import shared_key

    net = Supernet("stagewise", **PROXY)
    spec = net.largest
    keys = {}
    for block in ("mbconv", "convnext"):
        st = StageSpec(block, depth=1, width=spec.stages[1].width, stride=2,
                       downsample="patch_merge", kernel=3, expansion=4.0)
        s = dataclasses.replace(spec, stages=(spec.stages[0], st, *spec.stages[2:]))
        with torch.device("meta"):
            model = build_model(s, num_classes=10, in_chans=1)
        keys[block] = {shared_key(s, n, model.stem) for n, _ in model.named_parameters()
                       if n.startswith("stages.1.")}
    down = {k for k in keys["mbconv"] if ".down_" in k}
    assert down == {k for k in keys["convnext"] if ".down_" in k}
    assert down and all(k.startswith("stages.1.down_patch_merge_s2.") for k in down)
    assert all("reduction" not in k for k in keys["mbconv"] - down)
    assert keys["mbconv"] - down and not (keys["mbconv"] - down) & keys["convnext"]
    assert any(k.startswith("stages/1/down_patch_merge_s2/") for k in net.weights)
