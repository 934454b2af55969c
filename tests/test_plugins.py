"""Plug-ins register themselves: the core finds temporal's datasets and network."""
from __future__ import annotations

import pytest

from hybridnas import plugins


def test_temporal_registers_its_datasets_and_panel_network():
    from hybridnas.data import list_datasets

    assert {"sp500-20", "synthetic-panel"} <= set(list_datasets())
    net = plugins.network_for("assets")
    assert net.__name__ == "PanelNet" and net.__module__ == "hybridnas.temporal.model"


def test_an_unregistered_spec_feature_names_itself():
    with pytest.raises(KeyError, match="no plug-in builds specs with graphs=True"):
        plugins.network_for("graphs")
