"""hybridnas export: folders, parity of TorchScript/ONNX, load round trip, model card, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import hybridnas
from hybridnas.cli import main
from hybridnas.errors import UserError
from hybridnas.export import export_run, load, load_checkpoint
from hybridnas.export.exporter import (
    ONNX_TOLERANCE,
    export_model,
    model_card_info,
    parse_formats,
    select_trials,
)
from hybridnas.export.testing import RUN_CLASSES, RUN_IN_CHANS, RUN_RESOLUTION, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "tiny-run")


@pytest.fixture(scope="module")
def full_export(run, tmp_path_factory):
    """Trial 0 (MBConv + relative and global attention) in every format."""
    out = tmp_path_factory.mktemp("export")
    (result,) = export_run(run, trials=[0], out=out)
    return result


def _x(batch=3):
    return torch.randn(batch, RUN_IN_CHANS, RUN_RESOLUTION, RUN_RESOLUTION,
                       generator=torch.Generator().manual_seed(7))


def test_every_format_written_and_checked(full_export):
    folder = full_export.dir
    names = {p.name for p in folder.iterdir()}
    assert {"spec.yaml", "model.safetensors", "model.ts", "model.onnx", "meta.json",
            "README.md"} <= names
    assert full_export.ok and full_export.trained and not full_export.errors
    assert full_export.checks["onnx"] <= ONNX_TOLERANCE
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["trial_id"] == 0 and meta["run"] == "tiny-run"
    assert meta["input_shape"] == [RUN_IN_CHANS, RUN_RESOLUTION, RUN_RESOLUTION]
    assert meta["parity_max_abs_diff"]["onnx"] == full_export.checks["onnx"]


def test_load_round_trip_is_identical_to_the_trial_checkpoint(run, full_export):
    trained, _, _ = load_checkpoint(run / "checkpoints" / "trial_0")
    model = hybridnas.load(full_export.dir)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(_x()), trained(_x()))
    # spec.yaml alone builds the same architecture
    again = hybridnas.create_model(str(full_export.dir / "spec.yaml"), num_classes=RUN_CLASSES,
                                   in_chans=RUN_IN_CHANS)
    assert again.spec == model.spec
    assert hybridnas.get_spec(str(full_export.dir)) == model.spec


def test_onnx_runtime_matches_pytorch(full_export):
    import onnxruntime as ort

    model = load(full_export.dir)
    session = ort.InferenceSession(str(full_export.dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # dynamic batch axis
        x = _x(batch)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= ONNX_TOLERANCE


def test_torchscript_matches_eager(full_export):
    model = load(full_export.dir)
    scripted = torch.jit.load(str(full_export.dir / "model.ts"))
    with torch.no_grad():
        assert torch.allclose(scripted(_x()), model(_x()), atol=1e-5, rtol=0)


def test_model_card_states_the_facts(run, full_export):
    card = (full_export.dir / "README.md").read_text()
    c = hybridnas.cost(load(full_export.dir), (RUN_IN_CHANS, RUN_RESOLUTION, RUN_RESOLUTION))
    assert f"{c.params:,}" in card
    assert "5.000 ms (p10 4.500, p90 5.500) on cpu (test)" in card  # measured, with device
    assert "predicted latency | 6.000 ms" in card
    assert "0.9000 on digits after 4/4 proxy epochs, full fidelity" in card
    assert "run `tiny-run`, trial 0" in card
    assert "2 of 2 on the Pareto front (cheapest first)" in card  # slowest of the front
    assert "rank by val_accuracy | 1 of 3" in card
    assert "| 2 | transformer | 1 | 32 | 2 | 2x2 |" in card  # stage table with resolutions


def test_model_card_info_is_plain_data(run):
    spec = hybridnas.export.testing.TINY_SPECS["convnext"]
    meta = {"num_classes": 4, "in_chans": 1, "input_shape": [1, 16, 16], "resolution": 16,
            "epochs": 1, "max_epochs": 4}
    info = model_card_info(spec, meta, run={"metric": 0.5, "metric_name": "val_accuracy"})
    json.dumps(info)  # serialisable
    assert info["full_fidelity"] is False
    assert [s["resolution"] for s in info["stages"]] == ["8x8", "4x4"]
    assert info["params"] == hybridnas.cost(spec, 16, num_classes=4, in_chans=1).params


def test_pareto_export_spec_and_weights_only(run, tmp_path):
    results = export_run(run, pareto=True, formats="spec,pytorch", out=tmp_path)
    assert sorted(r.trial_id for r in results) == [0, 1]
    for r in results:
        assert sorted(p.name for p in r.dir.iterdir()) == [
            "README.md", "meta.json", "model.safetensors", "spec.yaml"]
        assert r.ok and not r.checks


def test_trial_without_kept_weights_exports_untrained(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / "trial_2")
    (result,) = export_run(copy, trials=[2], formats="spec,pytorch", out=tmp_path / "out")
    assert not result.trained and "pytorch" not in result.files
    assert not (result.dir / "model.safetensors").exists()
    assert "**Untrained**" in (result.dir / "README.md").read_text()
    with pytest.warns(UserWarning, match="untrained"):
        model = load(result.dir)
    assert model.num_classes == RUN_CLASSES  # head size from config.yaml


def test_select_trials(run):
    df = hybridnas.export.read_trials(run)
    assert select_trials(df, top=2, by="metric") == [0, 1]  # early-stopped 5 is low fidelity
    assert select_trials(df, top=2, by="latency") == [1, 2]
    assert select_trials(df, top=1, by="val_accuracy") == [0]
    assert select_trials(df, trials=[5, 5, 1]) == [5, 1]
    assert select_trials(df, front=[0, 1]) == [0, 1]
    with pytest.raises(UserError, match="trial 3 is FAILED: NonFiniteLoss"):
        select_trials(df, trials=[3])
    with pytest.raises(UserError, match="no trial 42"):
        select_trials(df, trials=[42])
    with pytest.raises(UserError, match="choose one"):
        select_trials(df, trials=[0], top=1)


def test_parse_formats():
    assert parse_formats("onnx, spec,onnx") == ("onnx", "spec")
    assert parse_formats("all") == ("spec", "pytorch", "torchscript", "onnx")
    with pytest.raises(UserError, match="'tflite' is not one of"):
        parse_formats("spec,tflite")


@pytest.mark.parametrize("argv, message", [
    (["--trial", "3"], "trial 3 is FAILED"),
    (["--trial", "99"], "no trial 99"),
    (["--format", "tflite"], "--format 'tflite'"),
])
def test_cli_errors_are_one_line(run, capsys, argv, message):
    assert main(["export", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_missing_run_directory(tmp_path, capsys):
    assert main(["export", str(tmp_path / "no-run"), "--pareto"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run directory" in err and len(err.splitlines()) == 1


def test_cli_exports_a_spec_file(tmp_path, capsys):
    spec = hybridnas.export.testing.TINY_SPECS["convnext"]
    spec.save(str(tmp_path / "arch.yaml"))
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "arch.yaml"), "--format", "spec", "--resolution", "16",
                 "--num-classes", "3", "--out", str(out)]) == 0
    assert "exported 1 architecture(s)" in capsys.readouterr().out
    assert hybridnas.get_spec(str(out)) == spec
    assert json.loads((out / "meta.json").read_text())["num_classes"] == 3


def test_export_model_reports_a_failing_format_without_raising(tmp_path, monkeypatch):
    from hybridnas.export import exporter

    def broken(*args, **kwargs):
        raise RuntimeError("aten::weird_op has no ONNX translation")

    monkeypatch.setattr(exporter, "export_onnx", broken)
    result = export_model(hybridnas.export.testing.TINY_SPECS["convnext"], tmp_path,
                          formats="spec,onnx", resolution=16, num_classes=3)
    assert not result.ok and "weird_op" in result.errors["onnx"]
    assert not (tmp_path / "model.onnx").exists()
    assert "onnx: not written: RuntimeError" in (tmp_path / "README.md").read_text()


# --------------------------------------------------------------------------
# Slow: every named architecture and every tiny block family through ONNX
# --------------------------------------------------------------------------

ZOO_RESOLUTION = 32


@pytest.mark.slow
@pytest.mark.parametrize("name", hybridnas.list_models())
def test_named_architecture_exports_to_onnx_with_parity(name, tmp_path):
    from hybridnas.zoo import get_named

    named = get_named(name)
    # The smallest input that every stage can downsample (LeViT reduces 64x).
    resolution = max(ZOO_RESOLUTION, named.spec.reduction) if named.spec.dims == 2 else ZOO_RESOLUTION
    if named.spec.dims == 2:
        named.spec.validate(resolution)
    result = export_model(name, tmp_path, formats="spec,onnx", resolution=resolution,
                          num_classes=10, in_chans=named.in_chans,
                          meta={"assets": 3} if getattr(named.spec, "assets", False) else None)
    assert not result.errors, result.errors
    print(f"{name}: onnx max|diff| = {result.checks['onnx']:.2e}")
    assert result.checks["onnx"] <= ONNX_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(hybridnas.export.testing.TINY_SPECS))
def test_tiny_specs_export_everything(key, tmp_path):
    spec = hybridnas.export.testing.TINY_SPECS[key]
    model = hybridnas.build_model(spec, num_classes=3, in_chans=1).eval()
    result = export_model(model, tmp_path, resolution=16)
    assert result.ok, (result.checks, result.errors)
    with torch.no_grad():
        x = torch.randn(2, 1, 16, 16)
        assert torch.equal(load(tmp_path)(x), model(x))


def test_export_falls_back_to_the_csv_when_the_parquet_is_truncated(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    data = (copy / "trials.parquet").read_bytes()
    (copy / "trials.parquet").write_bytes(data[: len(data) // 2])
    from hybridnas.rundir import TrialsFallbackWarning

    with pytest.warns(TrialsFallbackWarning, match=r"trials\.parquet is unreadable .*trials\.csv "
                                                   r"instead"):
        assert main(["export", str(copy), "--trial", "1", "--format", "spec",
                     "--out", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "out").is_dir()


def test_checkpoint_meta_goes_through_the_guarded_reader(run, tmp_path):
    from hybridnas.export.checkpoint import read_meta

    folder = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoints" / "trial_0", folder)
    (folder / "meta.json").write_bytes(b'{"x": "\xff"}')
    with pytest.raises(UserError, match="not UTF-8"):
        read_meta(folder)
    (folder / "meta.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        read_meta(folder)
