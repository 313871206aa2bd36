"""Two build children at once (qbench.measure.prepare.build_jobs): each artifact built once, by either child."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from qbench.measure.prepare import build_jobs
from tests.helpers import run_pytest

# tests/slow_build_variants.py's variants; not imported here, which would register them in this process too
NAMES = tuple(f"slow-build-{i}" for i in range(1, 5))


@pytest.mark.skipif(build_jobs() < 2, reason="one CPU available to this run: its builds run in one child")
def test_two_children_build_the_list_from_both_ends_each_artifact_once(smoke_run, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(smoke_run[0], build, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    proc = run_pytest(
        "benchmarks/test_costs.py",  # builds and loads each variant; stubs have no accuracy to floor
        "-p",
        "tests.slow_build_variants",
        "--qbench-profile=smoke",
        f"--qbench-build-dir={build}",
        f"--qbench-variants={','.join(NAMES)}",
        "--benchmark-disable",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    builders = {}
    for name in NAMES:
        assert len(re.findall(rf"building {name} -> ", out)) == 1, (name, out[-3000:])
        (meta,) = [json.loads(p.read_text()) for p in build.glob(f"variants/*/{name}-*.json.json")]
        builders[name] = meta["built_by"]["pid"]
    # the first child starts at the list's head, the second at its tail: each built its own end
    assert builders[NAMES[0]] != builders[NAMES[-1]], builders
    assert len(set(builders.values())) == 2, builders
