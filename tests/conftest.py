"""Fixtures for qbench's own tests."""

import shutil
from pathlib import Path

import pytest

from tests.helpers import make_pet_tree, run_pytest


@pytest.fixture
def pet_tree(tmp_path) -> Path:
    return make_pet_tree(tmp_path / "pet")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One end-to-end ``pytest benchmarks`` on the smoke profile; its build dir is reused by later runs."""
    build = tmp_path_factory.mktemp("smoke-build")
    proc = run_pytest("benchmarks", "--qbench-profile", "smoke", "--qbench-build-dir", str(build), "--benchmark-max-time", "0.2")
    if (build / "report").is_dir():  # later runs reuse the build dir and rewrite its report: keep this run's
        shutil.copytree(build / "report", tmp_path_factory.getbasetemp() / "smoke-run-report")
    return build, proc


@pytest.fixture(scope="session")
def smoke_report(smoke_run, tmp_path_factory) -> Path:
    """The report the smoke run wrote, as it wrote it (whichever tests ran on its build dir since)."""
    return tmp_path_factory.getbasetemp() / "smoke-run-report"
