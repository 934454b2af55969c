"""Untrusted inputs: bounds before allocation, the guarded YAML/JSON reader,
and search options checked before anything runs (issue 17, items 4 and 6).

Every case here used to allocate until memory ran out, print a traceback, or
be accepted silently. None of these tests builds a model or starts Ray.
"""
from __future__ import annotations

import pytest

from hybridnas import spaces
from hybridnas._io import FileLimits, parse_json, parse_yaml, read_text
from hybridnas.cli import main
from hybridnas.errors import UserError
from hybridnas.search.config import SearchConfig
from hybridnas.spec import SPEC_LIMITS, ArchSpec, SpecError

SPEC = "stem: {kind: conv, widths: [32]}\nstages:\n  - {block: mbconv, depth: 1, width: 32, stride: 2}\n"


def laughs(levels: int = 9, leaf: str = "lol") -> str:
    """A flow sequence of nested aliases that expands to 9**levels leaves."""
    items = [f"&a0 [{','.join([leaf] * 9)}]"]
    items += [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ",".join(items) + "]"


# ------------------------------------------------------------ guarded reader


@pytest.mark.parametrize("field", ["name", "stem.widths", "stem.kernel", "assets"])
def test_alias_bombs_fail_fast_with_the_limit(field):
    if field == "name":
        text = f"name: {laughs()}\n{SPEC}"
    elif field == "assets":
        text = f"assets: {laughs()}\n{SPEC}"
    else:
        key = field.split(".")[1]
        text = (f"stem: {{kind: conv, widths: [32], {key}: {laughs(leaf='1')}}}\n"
                + SPEC.split("\n", 1)[1])
    with pytest.raises(SpecError, match="more than the limit of 100000 nodes"):
        ArchSpec.from_yaml(text, source="bomb.yaml")


def test_aliases_within_the_limit_still_load():
    data = parse_yaml("a: &x [1, 2]\nb: *x\n", "small.yaml")
    assert data == {"a": [1, 2], "b": [1, 2]}


def test_recursive_and_deep_documents_are_refused():
    with pytest.raises(UserError, match="refers to itself"):
        parse_yaml("a: &a [*a]\n", "rec.yaml")
    with pytest.raises(UserError, match="deep.yaml: nested deeper than the limit of 64"):
        parse_yaml("[" * 1000 + "]" * 1000, "deep.yaml")
    with pytest.raises(UserError, match="deep.json: nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000, "deep.json")


def test_big_and_non_utf8_files_are_one_line_errors(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * 2000 + "\n")
    with pytest.raises(UserError, match="big.yaml: file is larger than the limit of 1000 bytes"):
        read_text(big, limits=FileLimits(max_bytes=1000))
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: " + "x" * (2 << 20) + "\n" + SPEC)
    with pytest.raises(SpecError, match="huge.yaml: file is larger than the limit"):
        ArchSpec.load(str(huge))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1") + SPEC.encode())
    with pytest.raises(SpecError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9"):
        ArchSpec.load(str(latin))
    space = tmp_path / "space.yaml"
    space.write_bytes(b"\xff\xfearch: {}\n")
    with pytest.raises(UserError, match="space.yaml: not UTF-8"):
        spaces.load(str(space))
    config = tmp_path / "config.yaml"
    config.write_bytes(b"epochs: \xff\n")
    assert main(["search", "--config", str(config), "--results-dir", str(tmp_path / "r")]) == 2


# ------------------------------------------------------------ spec bounds


@pytest.mark.parametrize("stage, field", [
    ("{block: mbconv, depth: 2, width: 10000000, stride: 2}", "stages[0].width=10000000"),
    ("{block: mbconv, depth: 100000000, width: 32, stride: 2}", "stages[0].depth=100000000"),
    ("{block: mbconv, depth: 1, width: 32, stride: 2, kernel: 100001}", "stages[0].kernel=100001"),
    ("{block: transformer, depth: 1, width: 32, stride: 2, heads: 100000}", "stages[0].heads"),
    ("{block: transformer, depth: 1, width: 32, stride: 2, window: 1000000}", "stages[0].window"),
    ("{block: mbconv, depth: 1, width: 32, stride: 2, expansion: 1.0e9}", "stages[0].expansion"),
    ("{block: mbconv, depth: 1, width: 32, stride: 2, expansion: .inf}", "stages[0].expansion=inf"),
])
def test_huge_values_are_refused_before_building(stage, field):
    text = f"stem: {{kind: conv, widths: [32]}}\nstages:\n  - {stage}\n"
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ArchSpec.from_yaml(text).validate()


def test_parameter_estimate_catches_wide_and_deep_together():
    text = "stem: {kind: conv, widths: [32]}\nstages:\n  - {block: transformer, depth: 1000, width: 16384, stride: 2}\n"
    with pytest.raises(SpecError, match=r"about .* parameters, over the limit"):
        ArchSpec.from_yaml(text).validate()


def test_stem_and_stage_counts_and_names_are_bounded():
    many = "stages:\n" + "  - {block: mbconv, depth: 1, width: 8, stride: 1}\n" * 1000
    with pytest.raises(SpecError, match="stages has 1000 entries, over the limit of 32"):
        ArchSpec.from_yaml("stem: {kind: conv, widths: [8]}\n" + many)
    with pytest.raises(SpecError, match="stem.widths has 100 entries, over the limit of 16"):
        ArchSpec.from_yaml("stem: {kind: conv, widths: [%s]}\n" % ",".join(["8"] * 100)
                           + SPEC.split("\n", 1)[1])
    with pytest.raises(SpecError, match=r"name=\[1, 2\] has the wrong type \(expected str\)"):
        ArchSpec.from_yaml("name: [1, 2]\n" + SPEC)
    with pytest.raises(SpecError, match="name is 5000 characters long, over the limit of 200"):
        ArchSpec.from_yaml(f"name: {'n' * 5000}\n" + SPEC)


def test_resolution_is_bounded_everywhere(tmp_path):
    spec = ArchSpec.from_yaml(SPEC)
    with pytest.raises(SpecError, match="resolution=100000 is over the limit of 8192"):
        spec.validate(100000)
    from hybridnas.data import load_dataset

    with pytest.raises(UserError, match="resolution=100000 is over the limit"):
        load_dataset("digits", resolution=100000)
    with pytest.raises(UserError, match="resolution=100000 is over the limit"):
        spaces.load("stagewise", resolution=100000)
    assert main(["export", "coatnet_0", "--format", "spec", "--resolution", "100000",
                 "--out", str(tmp_path / "e")]) == 2


def test_space_whose_largest_values_go_over_a_limit(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text("arch:\n  stem: {kind: conv, widths: [32]}\n  stages:\n"
                    "    - {block: mbconv, depth: 1, width: {int: [16, 100000000]}, stride: 2}\n")
    with pytest.raises(UserError, match=r"largest values .* stages\[0\].width=100000000"):
        spaces.load(str(path))
    with pytest.raises(UserError, match=r"width_mult=1e\+30 must be a number in \(0, 64\]"):
        spaces.load("stagewise", width_mult=1e30)


def test_every_named_architecture_is_within_the_limits():
    from hybridnas.zoo import get_spec, list_models

    for name in list_models():
        assert get_spec(name).limit_problems() == [], name
    assert SPEC_LIMITS.max_width >= 2048


# ------------------------------------------------------------ search options


@pytest.mark.parametrize("argv, message", [
    (["--budget-gpu-hours", "nan"], "budget_gpu_hours=nan must be a finite number"),
    (["--budget-gpu-hours", "inf"], "budget_gpu_hours=inf must be a finite number"),
    (["--lr", "nan"], "lr=nan must be a finite number"),
    (["--max-concurrent", "0"], "max_concurrent=0 must be >= 1"),
    (["--space-option", "frob=1"], "unknown space option 'frob'"),
    (["--space-option", "width_mult=-1"], "width_mult=-1 must be a number"),
    (["--name", "../../x"], "name='../../x' must be one folder name"),
    (["--name", ".."], "name='..' must be one folder name"),
    (["--resolution", "100000"], "resolution=100000 must be >= 1 and <= 8192"),
    (["--latency-device", "cpux"], "latency_device='cpux' is not a device"),
])
def test_bad_flags_are_one_line_errors_before_anything_runs(tmp_path, capsys, argv, message):
    results = tmp_path / "results"
    assert main(["search", *argv, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not results.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("text, message", [
    ('epochs: "ten"\n', "epochs='ten' has the wrong type (expected an integer)"),
    ("objectives: 7\n", "objectives=7 has the wrong type (expected a list)"),
    ("objectives: [latency, 7]\n", "objectives holds 7, expected only strings"),
    ("amp: 1\n", "amp=1 has the wrong type (expected true or false)"),
    ("lr: .nan\n", "lr=nan must be a finite number"),
    ("batch_size: 100000000\n", "batch_size=100000000 must be >= 1 and <= 65536"),
    ("space_options: {width_mult: .inf}\n", "width_mult=inf must be a number"),
    ("name: " + "n" * 300 + "\n", "must be one folder name"),
    ("1: 2\n", "unknown option 1"),
    (f"name: {laughs()}\n", "more than the limit of 100000 nodes"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["search", "--config", str(path), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and len(err) < 1200, err
    assert not (tmp_path / "r").exists()


def test_valid_options_still_pass():
    cfg = SearchConfig.from_mapping({"lr": 1, "budget_gpu_hours": 2, "name": "run-1.b",
                                     "space_options": {"width_mult": 0.25},
                                     "latency_device": "cuda:1", "objectives": "latency,params"})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.objectives == ["latency", "params"]


def test_cli_prints_every_user_error_on_one_line(monkeypatch, capsys):
    import hybridnas.cli as cli

    def fail(args):
        raise SpecError("spec.yaml: bad value\nwith a second line")

    real = cli.build_parser

    def patched():
        parser = real()
        sub = next(a for a in parser._actions if a.dest == "command")
        sub.choices["show"].set_defaults(func=fail)
        return parser

    monkeypatch.setattr(cli, "build_parser", patched)
    assert main(["show", "x.yaml"]) == 2
    assert capsys.readouterr().err == "hybridnas show: error: spec.yaml: bad value with a second line\n"


def test_latency_table_that_is_not_utf8_is_a_user_error(tmp_path):
    from hybridnas.latency import LatencyPredictor

    table = tmp_path / "table.json"
    table.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(UserError, match="table.json: not UTF-8"):
        LatencyPredictor.load(table)
