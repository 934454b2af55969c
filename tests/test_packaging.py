"""Package metadata in the current pyproject form (no setuptools deprecation
warnings on install)."""
from __future__ import annotations

import os
import re

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")


def test_licence_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    with open(PYPROJECT, "rb") as f:
        data = tomllib.load(f)
    # the table form {text = ...} is deprecated since setuptools 77 (PEP 639)
    assert data["project"]["license"] == "Apache-2.0"
    req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=\s*(\d+)", req).group(1)) >= 77
    assert not any("License ::" in c for c in data["project"].get("classifiers", []))
