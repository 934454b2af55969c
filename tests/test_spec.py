"""The architecture spec: pure data, canonical, round-trips, clear errors."""
import subprocess
import sys

import pytest

from hybridnas.spec import (BLOCK_SCHEMAS, ArchSpec, HeadSpec, SpecError, StageSpec, StemSpec)


def small_spec(**stage_kw):
    return ArchSpec(
        stem=StemSpec(kind="conv", widths=(16, 32), strides=(2, 1)),
        stages=(StageSpec("mbconv", depth=1, width=32, stride=1),
                StageSpec("transformer", depth=2, width=64, stride=2, **stage_kw)),
    )


def test_spec_module_does_not_import_torch():
    code = ("import sys, hybridnas, hybridnas.spec, hybridnas.zoo; hybridnas.list_models(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_defaults_are_filled_so_equal_networks_compare_equal():
    a = StageSpec("convnext", depth=2, width=96)
    b = StageSpec("convnext", depth=2, width=96, kernel=7, expansion=4, layer_scale=1e-6,
                  norm="ln", act="gelu")
    assert a == b
    assert a.kernel == 7 and a.heads is None  # convnext takes no heads


def test_heads_and_head_dim_are_two_views_of_one_choice():
    s = StageSpec("transformer", depth=1, width=192, head_dim=32)
    assert s.heads == 6
    t = StageSpec("transformer", depth=1, width=192, heads=6)
    assert t.head_dim == 32 and s == t


@pytest.mark.parametrize("fmt", ["dict", "json", "yaml"])
def test_round_trip_is_exact(fmt):
    spec = small_spec(attention="rel", window=4).replace(name="x")
    if fmt == "dict":
        back = ArchSpec.from_dict(spec.to_dict())
    elif fmt == "json":
        back = ArchSpec.from_json(spec.to_json())
    else:
        back = ArchSpec.from_yaml(spec.to_yaml())
    assert back == spec and back.arch_id == spec.arch_id and back.name == "x"


def test_arch_id_is_stable_and_ignores_name():
    spec = small_spec()
    assert spec.arch_id == spec.replace(name="other").arch_id
    assert len(spec.arch_id) == 12
    assert spec.arch_id != small_spec(mlp_ratio=3).arch_id
    # Stable across processes (no hash randomisation).
    code = ("from hybridnas.spec import *; import json; "
            f"print(ArchSpec.from_json({spec.to_json()!r}).arch_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == spec.arch_id


def test_pattern_and_resolutions():
    spec = small_spec()
    assert spec.pattern == "C-T"
    assert spec.reduction == 4
    assert spec.stage_resolutions(32) == [(16, 16), (8, 8)]
    assert spec.stage_resolutions(31) == [(16, 16), (8, 8)]


@pytest.mark.parametrize("change, message", [
    (dict(heads=5), "stages[1].heads=5 does not divide width=64"),
    (dict(kernel=3), "stages[1].kernel=3 is not a parameter of block 'transformer'"),
    (dict(attention="grid"), "stages[1].attention='grid' is not supported"),
    (dict(act="swishy"), "stages[1].act='swishy' is not one of"),
])
def test_validation_names_field_and_value(change, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        small_spec(**change).validate()


def test_unknown_block_and_bad_depth():
    spec = ArchSpec(stem=StemSpec(), stages=(StageSpec("densenet", depth=1, width=8),))
    with pytest.raises(SpecError, match=r"stages\[0\].block='densenet' is not a known block"):
        spec.validate()
    spec = ArchSpec(stem=StemSpec(), stages=(StageSpec("mbconv", depth=0, width=8),))
    with pytest.raises(SpecError, match=r"stages\[0\].depth=0 must be >= 1"):
        spec.validate()


def test_resolution_check_names_the_stage():
    spec = small_spec()
    spec.validate(8)
    with pytest.raises(SpecError, match=r"stages\[1\].stride=2 downsamples a 1x1 map"):
        spec.validate(2)


def test_from_dict_errors_name_the_key():
    data = small_spec().to_dict()
    data["stages"][1]["heads"] = "four"
    with pytest.raises(SpecError, match=r"stages\[1\].heads='four' has the wrong type"):
        ArchSpec.from_dict(data, source="my.yaml")
    data = small_spec().to_dict()
    data["stages"][0]["colour"] = 1
    with pytest.raises(SpecError, match=r"my.yaml: stages\[0\]: unknown key\(s\) \['colour'\]"):
        ArchSpec.from_dict(data, source="my.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        ArchSpec.from_yaml("stages: [", source="bad.yaml")


def test_cls_token_only_in_last_stage_and_pool_cls_needs_it():
    bad = ArchSpec(stem=StemSpec(kind="patchify", widths=(32,), kernel=4),
                   stages=(StageSpec("transformer", 1, 32, stride=1, attention="global",
                                     cls_token=True),
                           StageSpec("transformer", 1, 32, stride=1)))
    with pytest.raises(SpecError, match="cls_token=true is only allowed in the last stage"):
        bad.validate()
    bad = ArchSpec(stem=StemSpec(), stages=(StageSpec("mbconv", 1, 32),), head=HeadSpec(pool="cls"))
    with pytest.raises(SpecError, match="head.pool='cls' needs"):
        bad.validate()


def test_load_and_save(tmp_path):
    spec = small_spec()
    for name in ("a.yaml", "a.json"):
        spec.save(str(tmp_path / name))
        assert ArchSpec.load(str(tmp_path / name)) == spec
    with pytest.raises(SpecError, match="no such spec file"):
        ArchSpec.load(str(tmp_path / "missing.yaml"))


def test_every_schema_names_only_stage_fields():
    from hybridnas.spec import BLOCK_PARAM_FIELDS

    for key, schema in BLOCK_SCHEMAS.items():
        assert set(schema.params) <= set(BLOCK_PARAM_FIELDS), key
        assert schema.letter in "CTI", key


def test_token_stage_must_keep_its_input_width():
    spec = ArchSpec(stem=StemSpec(kind="patchify", widths=(48,), kernel=4, norm="none"),
                    stages=(StageSpec("transformer", 1, 64, stride=1, attention="global",
                                      pos_embed=True, cls_token=True),),
                    head=HeadSpec(pool="cls"))
    with pytest.raises(SpecError, match=r"stages\[0\].width=64 must equal its input width 48"):
        spec.validate()
