"""Load time, first call and resident memory (qbench.measure.costs): read against variants of known size."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from qbench.measure import costs
from tests.helpers import REPO, run_pytest


def test_a_sample_counts_what_the_variant_holds_not_the_imports_nor_the_test_images():
    loaded = {"baseline": {"rss_kib": 300_000, "import_s": 2.0}, "load": {"load_s": 0.5, "rss_kib": 300_000 + 10 * 1024}}
    loaded["first_call_s"] = 0.004
    one = costs.sample(loaded, {"rss_kib": 330_000, "peak_kib": 330_000 + 5 * 1024})  # 20 MiB of images held meanwhile
    assert one["load_mib"] == 10 and one["peak_mib"] == 15 and one["load_s"] == 0.5
    summary = costs.summarize([one, one | {"load_s": 0.7, "peak_mib": 17.0}, one | {"load_s": 0.6}])
    assert summary["cost_samples"] == 3 and summary["load_ms"] == 600 and summary["load_ms_range"] == [500, 700]
    assert summary["peak_mib"] == 15 and summary["peak_mib_range"] == [15, 17]


def test_known_allocations_read_as_allocated(smoke_run, tmp_path):
    """100 MiB held from load and 50 MiB more per call read 100 and 150 MiB (5 %); a no-op under 2 MiB."""
    build = tmp_path / "build"
    shutil.copytree(smoke_run[0], build, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    proc = run_pytest(
        "benchmarks/test_costs.py",
        "-p",
        "tests.cost_variants",
        "--qbench-profile=smoke",
        f"--qbench-build-dir={build}",
        "--qbench-variants=test-alloc-100-50,test-noop",
        "--qbench-cost-samples=2",
        "--benchmark-disable",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    rows = {r["variant"]: r for r in json.loads((build / "report" / "summary.json").read_text())["rows"]}
    alloc, noop = rows["test-alloc-100-50"], rows["test-noop"]
    assert alloc["cost_samples"] == noop["cost_samples"] == 2
    assert 95 <= alloc["load_mib"] <= 105 and 142.5 <= alloc["peak_mib"] <= 157.5, alloc
    assert all(95 <= v <= 105 for v in alloc["load_mib_range"]) and all(142.5 <= v <= 157.5 for v in alloc["peak_mib_range"])
    assert noop["load_mib"] < 2 and noop["peak_mib"] < 2, noop
    assert "| test-alloc-100-50 |" in out and "Peak memory [MiB]" in out  # the second table, in the terminal


PAIRED_IMPORT = """
import json, sys
from pathlib import Path

import numpy as np

import tests.cost_variants  # noqa: F401 - registers test-slow-import in this process only
from qbench.measure.isolation import close_workers, start_imported_workers, start_remote_runner

tmp = Path(sys.argv[1])
np.save(tmp / "inputs.npy", np.zeros((3, 8, 8, 3), dtype=np.uint8))
(tmp / "model.bin").write_bytes(b"x")
pairs = start_imported_workers("test-slow-import", 2)
inputs = {"path": str(tmp / "inputs.npy"), "count": 3, "preprocess": "unit"}
runner = start_remote_runner(
    "test-slow-import", tmp / "model.bin", {"image_size": 8}, 1, {}, inputs, costs=True, imported=pairs[0]
)
out = {
    "imported": [baseline["imported"] for _, baseline in pairs],
    "pids": [worker.proc.pid for worker, _ in pairs],
    "runner_pid": runner.worker.proc.pid,
    "baseline_kept": runner.costs["baseline"] == pairs[0][1],
    "scores": len(runner.evaluate()),
}
close_workers([runner.worker, pairs[1][0]])
print(json.dumps(out))
"""


def test_a_cost_samples_worker_imports_beside_the_variants_own_and_is_loaded_as_it_is(tmp_path):
    """``start_imported_workers``: two workers' runtime imports (0.5 s each, ``tests.slow_import``) run at
    the same time, not one after the other; a runner started on one of them loads in that same process and
    keeps the baseline its import read (``imported``)."""
    proc = subprocess.run(
        [sys.executable, "-c", PAIRED_IMPORT, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    (a0, a1), (b0, b1) = got["imported"]
    assert a1 - a0 >= 0.5 and b1 - b0 >= 0.5, got  # each really imported the slow runtime
    assert max(a0, b0) < min(a1, b1), f"the two imports did not overlap: {got['imported']}"
    assert got["pids"][0] != got["pids"][1] and got["runner_pid"] == got["pids"][0], got
    assert got["baseline_kept"] and got["scores"] == 3, got
