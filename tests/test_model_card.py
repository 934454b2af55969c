"""The exported model card: a stage table that says what each column holds,
and a usage snippet that runs as written."""
from __future__ import annotations

import re

import pytest

import hybridnas
from hybridnas.export import export_run
from hybridnas.export.exporter import model_card_info, render_model_card
from hybridnas.export.testing import TINY_SPECS, make_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "tiny-run")
    (result,) = export_run(run, trials=[0], formats="spec,pytorch",
                           out=tmp_path_factory.mktemp("export"))
    return result.dir


def test_stage_rows_hold_counts_and_block_settings_apart():
    spec = TINY_SPECS["cctt"]
    meta = {"num_classes": 4, "in_chans": 1, "input_shape": [1, 16, 16], "resolution": 16}
    info = model_card_info(spec, meta)
    per_stage = hybridnas.cost(spec, 16, num_classes=4, in_chans=1, per_stage=True).by_module
    assert [s["params"] for s in info["stages"]] == [per_stage[f"stages.{i}"]["params"]
                                                     for i in range(4)]
    assert info["stages"][2]["settings"]["attention"] == "rel"
    card = render_model_card(info)
    assert "| stage | block | depth | width | stride | resolution | params | MACs | block settings |" \
        in card
    row = next(line for line in card.splitlines() if line.startswith("| 2 | transformer"))
    assert f"{per_stage['stages.2']['params'] / 1e6:.3f} M" in row and "attention=rel" in row


def test_usage_snippet_runs_as_written(exported):
    card = (exported / "README.md").read_text()
    code = re.search(r"## Use\n\n```python\n(.*?)```", card, flags=re.S).group(1)
    assert code.startswith("import torch\n")
    scope: dict = {}
    exec(code.replace("<this folder>", str(exported)), scope)  # noqa: S102 - our own card
    assert tuple(scope["logits"].shape) == (1, 4)
