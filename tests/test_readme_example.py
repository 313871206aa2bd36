"""The README's "Adding a variant" example, run as a user would: a plugin module, no change to qbench/."""

from __future__ import annotations

import json
import os
import re

from tests.helpers import REPO, run_pytest


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"```python\n# my_variants.py\n(.*?)```", text, flags=re.S)
    assert match, "README lost its variant example"
    return match.group(1)


def test_readme_variant_example_runs_isolated(tmp_path, smoke_run):
    build, first = smoke_run
    assert first.returncode == 0
    (tmp_path / "my_variants.py").write_text(readme_example())
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    proc = run_pytest(
        "benchmarks/test_accuracy.py", "benchmarks/test_latency.py",
        "-p", "my_variants",
        "--qbench-variants", "native,tflite-fp32,tflite-fp32-1thread",
        "--qbench-profile", "smoke", "--qbench-build-dir", str(build), "--benchmark-max-time", "0.2",
        "--qbench-cost-samples", "0",  # the example's point is the plugin; costs have their own test
        env={"PYTHONPATH": pythonpath},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "building tflite-fp32-1thread" in proc.stdout  # built by a prepare child that imported my_variants
    rows = {r["variant"]: r for r in json.loads((build / "report" / "summary.json").read_text())["rows"]}
    assert list(rows) == ["native", "tflite-fp32", "tflite-fp32-1thread"]
    mine = rows["tflite-fp32-1thread"]
    assert mine["status"] == "ok" and mine["accuracy"] == rows["tflite-fp32"]["accuracy"] and mine["median_latency_ms"] > 0
