"""Fixtures for qbench's own tests."""

from pathlib import Path

import pytest

from tests.helpers import make_pet_tree


@pytest.fixture
def pet_tree(tmp_path) -> Path:
    return make_pet_tree(tmp_path / "pet")
