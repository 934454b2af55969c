"""Search spaces: fixed points, proxy scaling, Optuna define-by-run, errors.

Parametrised over what the space files declare and what the zoo registers,
so a new space file or a new named architecture is tested without new code.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import hybridnas
from hybridnas import spaces
from hybridnas.spaces import SpaceError

MY_SPACES = ["stagewise", "vit_stem", "interleaved", "hybrid_zoo"]
ALL_SPACES = spaces.list_spaces()
PAIRS = [(s, n) for s in ALL_SPACES for n in spaces.load(s).named()]


@pytest.fixture(scope="module")
def loaded():
    return {name: spaces.load(name) for name in ALL_SPACES}


# ---- fixed points -----------------------------------------------------------

@pytest.mark.parametrize("space_name,arch", PAIRS, ids=[f"{s}-{n}" for s, n in PAIRS])
def test_named_architectures_are_fixed_points(loaded, space_name, arch):
    space = loaded[space_name]
    spec = hybridnas.get_spec(arch)
    answer = space.contains(spec)
    assert answer, answer.reason
    assert space.decode(space.encode(spec)) == spec
    assert space.encode(spec) == answer.params


def test_required_pairs_are_declared(loaded):
    assert {"coatnet_0", "convnext_tiny", "maxvit_tiny"} <= set(loaded["stagewise"].named())
    assert {"vit_c_1gf", "vit_c_4gf", "hybrid_vit"} <= set(loaded["vit_stem"].named())
    assert "interleaved_s" in loaded["interleaved"].named()


@pytest.mark.parametrize("arch", hybridnas.list_models())
def test_superset_contains_every_named_architecture(loaded, arch):
    zoo = loaded["hybrid_zoo"]
    spec = hybridnas.get_spec(arch)
    if spec.dims != zoo.dims:
        pytest.skip(f"{arch} is {spec.dims}-D (held by a {spec.dims}-D space)")
    assert arch in zoo.named()
    answer = zoo.contains(spec)
    assert answer, answer.reason


def test_named_lists_exactly_the_contained_architectures(loaded):
    # The README table comes from `hybridnas spaces --matrix`: every space
    # contains exactly the architectures its file names (of its dims).
    from hybridnas.spaces.cli import containment_matrix

    matrix = containment_matrix()
    assert set(matrix) == set(hybridnas.list_models())
    for arch, row in matrix.items():
        for name, contained in row.items():
            if contained is not None:
                assert contained == (arch in loaded[name].named()), (name, arch)
    answer = loaded["vit_stem"].contains(hybridnas.get_spec("coatnet_0"))
    assert not answer and "stem" in answer.reason


def _vit_stem_before_resnet(tmp_path):
    """vit_stem as it was before the resnet stem family: its conv option alone."""
    from pathlib import Path

    import yaml

    raw = yaml.safe_load(Path(spaces.load("vit_stem").path).read_text())
    raw["arch"] = raw["arch"]["oneof"]["conv"]
    raw["named"] = ["vit_c_1gf", "vit_c_4gf", "hybrid_vit"]
    path = tmp_path / "vit_stem_conv.yaml"
    path.write_text(yaml.safe_dump(raw))
    return spaces.load(path)


@pytest.mark.parametrize("resolution", [32, 224])
def test_vit_stem_keeps_every_point_and_param_it_had(loaded, tmp_path, resolution):
    # The resnet stem family joined vit_stem as a top-level oneof with
    # `default: conv`: the conv points keep their labels, and params recorded
    # before (no stem_family) still decode to the same architecture.
    old = _vit_stem_before_resnet(tmp_path).at(resolution)
    new = loaded["vit_stem"].at(resolution)
    assert new.size() > old.size()
    for seed in range(12):
        spec = old.sample(seed)
        params = old.encode(spec)
        assert new.contains(spec), new.contains(spec).reason
        assert new.encode(spec) == {"stem_family": "conv", **params}
        assert new.decode(params) == spec
    for name, spec in old.references().items():
        assert new.references()[name] == spec


def test_vit_stem_holds_the_r50_hybrid_under_its_own_labels(loaded):
    space = loaded["vit_stem"]
    spec = hybridnas.get_spec("vit_base_r50_s16")
    params = space.encode(spec)
    assert params["stem_family"] == "resnet"
    assert all(k == "stem_family" or k.startswith("resnet.") for k in params), params
    assert hybridnas.spaces.count_params(space.decode(params)) == \
        hybridnas.spaces.count_params(spec)
    # the included union's label sits under the includer's family
    zoo = loaded["hybrid_zoo"].encode(spec)
    assert zoo["family"] == "vit_stem" and zoo["vit_stem.stem_family"] == "resnet"
    # a seeded sample reaches both stem families
    assert {space.encode(space.sample(s))["stem_family"] for s in range(40)} == {"conv", "resnet"}


# ---- proxy scale --------------------------------------------------------------

@pytest.mark.parametrize("space_name", MY_SPACES)
@pytest.mark.parametrize("resolution", [28, 32, 64, 224])
def test_references_are_valid_points_at_every_resolution(loaded, space_name, resolution):
    space = loaded[space_name].at(resolution)
    refs = space.references()
    assert list(refs) == space.named()
    for name, spec in refs.items():
        assert spec.name == name
        spec.validate(resolution)
        assert space.contains(spec), space.contains(spec).reason
        last = spec.stage_resolutions(resolution)[-1][0]
        # the documented rule: stem downsampling goes until the last map is
        # at least min_grid, or no stem stride is left
        assert last >= space.min_grid or spec.stem.reduction == 1 or spec.stem.kind == "none"
        if resolution == space.reference_resolution:
            assert spec == hybridnas.get_spec(name)


def test_proxy_changes_only_the_stem_and_derived_grids(loaded):
    space = loaded["stagewise"].at(32)
    ref = space.references()["coatnet_0"]
    full = hybridnas.get_spec("coatnet_0")
    assert ref.stem.strides == (1, 1) and full.stem.strides == (2, 1)
    assert [s.stride for s in ref.stages] == [s.stride for s in full.stages]
    assert [s.depth for s in ref.stages] == [s.depth for s in full.stages]
    # relative-bias tables follow the token grid at the proxy resolution
    grids = [hw[0] for hw in ref.stage_resolutions(32)]
    assert [s.window for s in ref.stages[2:]] == grids[2:]
    # the decisions are the same at every resolution
    assert space.encode(ref) == loaded["stagewise"].encode(full)


@pytest.mark.parametrize("space_name", MY_SPACES)
def test_multipliers_keep_points_and_head_arithmetic(loaded, space_name):
    space = loaded[space_name].at(32, width_mult=0.25, depth_mult=0.5)
    for name, spec in space.references().items():
        assert space.decode(space.encode(spec)) == spec, name
        for s in spec.stages:
            if s.heads and s.head_dim and s.key_dim is None:
                assert s.heads * s.head_dim == s.width, (name, s)
        full = hybridnas.get_spec(name)
        assert hybridnas.spaces.count_params(spec) < hybridnas.spaces.count_params(full)


# ---- sampling, mutation, Optuna -----------------------------------------------

@pytest.mark.parametrize("space_name", MY_SPACES)
def test_sample_is_deterministic_and_feasible(loaded, space_name):
    space = loaded[space_name].at(32)
    a, b = space.sample(7), space.sample(7)
    assert a == b
    assert space.check(a) and space.contains(a)
    neighbour = space.mutate(a, 3)
    assert neighbour != a and space.contains(neighbour), space.contains(neighbour).reason
    differing = [k for k, v in space.encode(neighbour).items() if space.encode(a).get(k) != v]
    assert differing  # at least one decision changed


def test_optuna_define_by_run_labels_and_params(loaded):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = loaded["stagewise"].at(32)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_blocks = set()
    for _ in range(12):
        trial = study.ask()
        spec = space.suggest(trial)
        assert space.encode(spec) == trial.params
        assert space.decode(trial.params) == spec
        for i, stage in enumerate(spec.stages):
            seen_blocks.add(stage.block)
            own = [k for k in trial.params if k.startswith(f"stages.{i}.") and k.count(".") == 3]
            assert all(k.split(".")[2] == stage.block for k in own), own  # conditional labels
        ok = space.check(spec)
        study.tell(trial, 0.0 if ok else None,
                   state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL)
        if not ok:
            assert ok.reason
    assert len(seen_blocks) > 1


class OnlySuggestTrial:
    """What Ray Tune's define-by-run function may touch: suggest_* and nothing else."""

    def __init__(self, seed):
        import random

        self.rng, self.params = random.Random(seed), {}

    def suggest_categorical(self, name, choices):
        return self.params.setdefault(name, self.rng.choice(choices))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self.params.setdefault(name, self.rng.randrange(low, high + 1, step))

    def suggest_float(self, name, low, high, step=None, log=False):
        return self.params.setdefault(name, self.rng.uniform(low, high))


@pytest.mark.parametrize("space_name", MY_SPACES)
@pytest.mark.parametrize("resolution", [28, 32, 64])
def test_suggest_needs_only_suggest_methods(loaded, space_name, resolution):
    # also: at proxy resolutions no two decisions collapse onto one spec, so
    # encode gives back exactly the trial's params
    space = loaded[space_name].at(resolution)
    for seed in range(30):
        trial = OnlySuggestTrial(seed)
        spec = space.suggest(trial)
        assert space.decode(trial.params) == spec
        assert space.encode(spec) == trial.params


def test_enqueued_reference_replays_exactly(loaded):
    optuna = pytest.importorskip("optuna")
    space = loaded["vit_stem"].at(32)
    study = optuna.create_study()
    for spec in space.references().values():
        study.enqueue_trial(space.encode(spec))
    for spec in space.references().values():
        assert space.suggest(study.ask()) == spec


def test_size_matches_enumeration(tmp_path):
    path = _write(tmp_path, "tiny", """
        arch:
          stem: {kind: conv, widths: [{choice: [8, 16]}]}
          stages:
            list:
              - block: {choice: [mbconv, transformer]}
                depth: {int: [1, 2]}
                width: 16
                by_block: {mbconv: {kernel: {choice: [3, 5, 7]}}, transformer: {heads: 2}}
              - {block: convnext, depth: 1, width: 32, kernel: {choice: [3, 7]}}
            length: {choice: [1, 2]}
        """)
    space = spaces.load(path, resolution=16)
    seen = set()
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(600):
        seen.add(space._finish(spaces.space.build(space.arch, lambda d: d.draw(rng))).arch_id)
    assert space.size() == len(seen)


def test_data_section_is_suggested_and_returned(tmp_path):
    optuna = pytest.importorskip("optuna")
    path = _write(tmp_path, "withdata", """
        arch:
          stem: {kind: conv, widths: [8]}
          stages: [{block: mbconv, depth: 1, width: 8}]
        data:
          lookback: {choice: [16, 32, 64]}
          horizon: 5
        """)
    space = spaces.load(path, resolution=16)
    trial = optuna.create_study().ask()
    space.suggest(trial)
    assert trial.params["data.lookback"] in (16, 32, 64)
    assert space.data_params(trial.params) == {"lookback": trial.params["data.lookback"],
                                               "horizon": 5}
    spec = space.decode(trial.params)
    assert space.encode(spec, data={"lookback": 32}) == {**space.encode(spec),
                                                         "data.lookback": 32}


# ---- constraints --------------------------------------------------------------

@pytest.mark.parametrize("space_name", MY_SPACES)
def test_shipped_spaces_only_reject_by_declared_constraints(loaded, space_name):
    # Every draw is a valid spec at the reference size and at a proxy size:
    # rejections come from the file's constraints, never from arithmetic
    # (heads that do not divide a width, a window that cannot fit).
    import numpy as np

    from hybridnas.spaces.space import build

    rng = np.random.default_rng(0)
    for space in (loaded[space_name], loaded[space_name].at(32, width_mult=0.25)):
        for _ in range(150):
            spec = space._finish(build(space.arch, lambda d: d.draw(rng)))
            assert spec.problems(space.resolution) == [], spec


def test_conv_after_attention_is_rejected_with_reason(loaded):
    import dataclasses

    space = loaded["stagewise"]
    coatnet = hybridnas.get_spec("coatnet_0")
    params = space.encode(coatnet)
    # after attention, stage 3 is offered attention blocks only, under its own label
    assert params["stages.3.block_after_T"] == "transformer" and "stages.3.block" not in params
    del params["stages.3.block_after_T"]
    params.update({"stages.3.block": "mbconv", "stages.3.mbconv.kernel": 3,
                   "stages.3.mbconv.expansion": 4.0})
    with pytest.raises(SpaceError, match="no_conv_after_attention"):
        space.decode(params)
    # an architecture made outside the space: check and contains say why
    conv = dataclasses.replace(coatnet.stages[1], width=coatnet.stages[3].width)  # an mbconv
    spec = coatnet.replace(stages=coatnet.stages[:3] + (conv,))
    answer = space.check(spec)
    assert not answer and "no_conv_after_attention" in answer.reason
    contained = space.contains(spec)
    assert not contained and "no_conv_after_attention" in contained.reason


@pytest.mark.parametrize("resolution", [28, 8])
def test_ordering_grid_and_stride_are_resolved_when_proposing(loaded, resolution):
    # the quickstart proxy (28 px) and digits (8 px): what the space can know
    # while deciding is never a reason to reject; budgets (params) still are
    space = loaded["stagewise"].at(resolution, width_mult=0.25, depth_mult=0.5)
    narrowed, strides = set(), set()
    for seed in range(40):
        trial = OnlySuggestTrial(seed)
        spec = space.suggest(trial)
        # (multipliers map some decisions onto one spec: encode gives one of them)
        assert space.decode(trial.params) == spec == space.decode(space.encode(spec))
        verdict = space.check(spec)
        assert verdict or verdict.reason.startswith("params="), verdict.reason
        letters = [hybridnas.spec.stage_letter(s) for s in spec.stages]
        for i in range(1, len(letters)):
            if "T" in letters[:i]:
                assert f"stages.{i}.block_after_T" in trial.params
        narrowed |= {k.split("_", 1)[1] for k in trial.params if "_" in k.split(".")[-1]
                     and k.split(".")[-1].split("_")[0] in ("block", "stride")}
        strides.add(spec.stages[0].stride)
    assert {"after_T", "after_I", "max_1"} <= narrowed
    # at 28 px a patchify stem with a stride-2 first stage leaves attention a
    # 4x4 grid at 224 (attention_min_grid 7); at 8 px that stride is never offered
    assert ("no_attn" in narrowed) == (resolution == 28)
    assert strides == ({1} if resolution == 8 else {1, 2})  # five stride-2 steps do not fit 8x8


def test_references_left_out_where_they_are_no_points(loaded):
    space = loaded["stagewise"].at(8, width_mult=0.25, depth_mult=0.5)
    unfit = space.unfit_references()
    assert set(unfit) == {"coatnet_0", "maxvit_tiny"}  # five stride-2 steps on 8x8
    assert all("below 1x1" in why for why in unfit.values()), unfit
    refs = space.references()
    assert list(refs) == ["convnext_tiny"] and space.contains(refs["convnext_tiny"])
    # the decisions made at 224 decode at 28, where the strides fit
    at28 = loaded["stagewise"].at(28)
    params = loaded["stagewise"].encode(hybridnas.get_spec("coatnet_0"))
    assert at28.decode(params) == at28.references()["coatnet_0"]


def test_families_that_cannot_fit_are_not_offered(loaded):
    zoo = loaded["hybrid_zoo"]
    tiny = zoo.at(8)
    families = set()
    for seed in range(30):
        trial = OnlySuggestTrial(seed)
        tiny.suggest(trial)
        assert "family" not in trial.params
        families.add(trial.params["family_no_cvt"])
    assert "cvt" not in families and len(families) > 3
    assert "cannot fit resolution 8" in tiny.unfit_references()["cvt_13"]
    assert "family_no_cvt" not in zoo.at(28).encode(zoo.at(28).references()["cvt_13"])


def test_budget_and_attention_grid_constraints(tmp_path):
    import dataclasses

    path = _write(tmp_path, "budget", """
        reference_resolution: 16
        arch:
          stem: {kind: conv, widths: [8], strides: [1]}
          stages:
            - {block: mbconv, depth: 1, width: {choice: [8, 64]}, stride: 2}
            - block: {choice: [mbconv, transformer]}
              depth: 1
              width: 16
              stride: {choice: [1, 2]}
              by_block: {transformer: {heads: 2}}
        constraints: {max_params: 20000, attention_min_grid: 6, max_macs: 1.0e+6,
                      num_classes: 10}
        """)
    space = spaces.load(path)
    small = space.decode({"stages.0.width": 8, "stages.1.block": "mbconv", "stages.1.stride": 1})
    wide = space.decode({"stages.0.width": 64, "stages.1.block": "mbconv", "stages.1.stride": 1})
    assert space.check(small), space.check(small).reason
    assert "params=" in space.check(wide).reason
    # attention on a 4x4 grid: not offered (a transformer stage offers stride 1 only) ...
    coarse = {"stages.0.width": 8, "stages.1.block": "transformer", "stages.1.stride": 2}
    with pytest.raises(SpaceError, match="attention_min_grid 6"):
        space.decode(coarse)
    fine = space.decode({**coarse, "stages.1.stride": 1})
    assert space.encode(fine) == {"stages.0.width": 8, "stages.1.block": "transformer",
                                  "stages.1.stride_max_1": 1}
    assert space.check(fine)
    # ... and explained when made outside the space
    outside = fine.replace(stages=(fine.stages[0], dataclasses.replace(fine.stages[1], stride=2)))
    assert "grid" in space.check(outside).reason and "grid" in space.contains(outside).reason
    assert space.check(space.sample(0))
    # At a proxy resolution the constraints are still checked at the reference size,
    # and the reason names both sizes, not only the reference one.
    proxy = space.at(8)
    fine8 = proxy.decode({"stages.0.width": 8, "stages.1.block": "transformer",
                          "stages.1.stride": 1})
    outside8 = fine8.replace(stages=(fine8.stages[0],
                                     dataclasses.replace(fine8.stages[1], stride=2)))
    reason = proxy.check(outside8).reason
    assert "reference resolution 16" in reason, reason
    assert "this search's resolution is 8" in reason, reason
    reason = proxy.check(proxy.decode({"stages.0.width": 64, "stages.1.block": "mbconv",
                                       "stages.1.stride": 1})).reason
    assert "reference resolution 16" in reason and "builds it at 8" in reason, reason


# ---- errors ---------------------------------------------------------------------

BAD_FILES = {
    "unknown block": ("stages: [{block: densenet, depth: 1, width: 8}]", "stages[0].block",
                      "unknown block 'densenet'"),
    "bad range": ("stages: [{block: mbconv, depth: {int: [4, 2]}, width: 8}]",
                  "stages[0].depth.int", "low > high"),
    "dangling branch": (("stages: [{block: {choice: [mbconv]}, depth: 1, width: 8, "
                         "by_block: {convnext: {kernel: 7}}}]"), "by_block.convnext",
                        "dangling dependency"),
    "dangling switch": ("stages: [{block: mbconv, depth: 1, width: 8, by_norm: {bn: {}}}]",
                        "by_norm", "dangling dependency"),
    "dangling ref": ("stages: [{block: mbconv, depth: 1, width: {ref: stages.width}}]",
                     "stages[0].width", "dangling reference"),
    "wrong block param": ("stages: [{block: mbconv, depth: 1, width: 8, heads: 2}]",
                          "stages[0].heads", "takes no 'heads'"),
    "unknown field": ("stages: [{block: mbconv, depth: 1, width: 8, colour: red}]",
                      "stages[0].colour", "unknown stage field"),
    "duplicate label": (("stages: [{block: mbconv, depth: {int: [1, 2], label: d}, "
                         "width: {choice: [8], label: d}}]"), "stages[0].width", "already used"),
    "unknown default": ("stages: [{block: mbconv, depth: 1, width: {oneof: {a: 8}, default: b}}]",
                        "stages[0].width.default", "'b' is not an option"),
    # a default option's decisions keep the oneof's own label: one decision there collides
    "default clash": (("stages: [{block: mbconv, depth: 1, "
                       "width: {oneof: {a: {choice: [8, 16]}, b: 32}, default: a}}]"),
                      "stages[0].width.oneof.a", "already used"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_space_files_fail_at_load(tmp_path, case):
    body, where, what = BAD_FILES[case]
    path = tmp_path / "bad.yaml"
    path.write_text("arch:\n  stem: {kind: conv, widths: [8]}\n  " + body + "\n")
    with pytest.raises(SpaceError) as e:
        spaces.load(path)
    msg = str(e.value)
    assert str(path) in msg and where in msg and what in msg, msg


def test_yaml_syntax_and_unknown_names_are_user_errors(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("arch: {stem: [\n")
    with pytest.raises(SpaceError, match="broken.yaml: not valid YAML"):
        spaces.load(path)
    with pytest.raises(SpaceError, match="did you mean stagewise"):
        spaces.load("stagewse")
    space = spaces.load("stagewise")
    params = space.encode(hybridnas.get_spec("coatnet_0"))
    del params["stages.0.depth"]
    with pytest.raises(SpaceError, match="no value for 'stages.0.depth'"):
        space.decode(params)
    with pytest.raises(SpaceError, match="is not a point"):
        space.encode(hybridnas.get_spec("vit_c_1gf"))


def test_search_path_env_and_import_stays_light(tmp_path, monkeypatch):
    _write(tmp_path, "mine", "arch: {stages: [{block: mbconv, depth: 1, width: 8}]}")
    monkeypatch.setenv("HYBRIDNAS_SPACES", str(tmp_path))
    assert "mine" in spaces.list_spaces()
    assert spaces.load("mine").name == "mine"
    code = ("import sys, hybridnas, hybridnas.spaces as s; sp = s.load('stagewise'); "
            "sp.decode(sp.encode(hybridnas.get_spec('coatnet_0'))); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- CLI ------------------------------------------------------------------------

def test_cli_spaces_sample_contains(capsys):
    from hybridnas.cli import main

    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in MY_SPACES:
        assert name in out
    assert main(["spaces", "vit_stem"]) == 0
    assert "stem.depth" in capsys.readouterr().out
    assert main(["sample", "--space", "interleaved", "-n", "1", "--resolution", "32",
                 "--width-mult", "0.25", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "GMACs at 32x32" in out and "interleaved" in out
    assert main(["contains", "--space", "vit_stem", "vit_c_4gf"]) == 0
    assert '"stem.depth": "4"' in capsys.readouterr().out
    assert main(["contains", "--space", "vit_stem", "coatnet_0"]) == 1
    assert "not a point" in capsys.readouterr().out
    assert main(["contains", "--space", "nosuch", "coatnet_0"]) == 2


def _write(folder, name, body):
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path
