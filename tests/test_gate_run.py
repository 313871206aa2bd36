"""The gate end to end on the smoke model: no baseline, stored baseline, injected regressions."""

from __future__ import annotations

import json
import re

from qbench import fingerprint
from tests.helpers import run_pytest


def test_gate_without_baseline_then_with_one_then_against_injected_regressions(smoke_run, tmp_path):
    build, _ = smoke_run
    storage = tmp_path / "storage"
    common = (
        "benchmarks/test_gate.py",
        "benchmarks/test_latency.py::test_latency",
        "--qbench-profile=smoke",
        f"--qbench-build-dir={build}",
        f"--qbench-baseline-dir={tmp_path / 'baselines'}",
        f"--qbench-report-dir={tmp_path / 'report'}",
        "--qbench-variants=native,tflite-int8",
        "--benchmark-max-time=0.5",
        f"--benchmark-storage=file://{storage}",
        "--benchmark-compare",
        "--qbench-baseline-max-spread=100",  # CI machines are noisy; the spread rule has its own unit test
    )
    machine = fingerprint.machine_id()
    runs = storage / machine

    def accuracies():
        rows = json.loads((tmp_path / "report" / "summary.json").read_text())["rows"]
        return {r["variant"]: r["accuracy"] for r in rows}

    # 0. nothing stored yet: one line says so; the passing run records the portable baseline
    zero = run_pytest(*common, "--qbench-portable-save")
    out = zero.stdout + zero.stderr
    assert zero.returncode == 0, out[-3000:]
    assert f"qbench gate: nothing to gate against on machine {machine}" in out
    assert len(list((tmp_path / "baselines" / "portable").glob("*.json"))) == 1
    assert not runs.exists()
    seen = accuracies()

    # 1. a machine with no stored run: passes on same-run ratios, says so in one line, never a traceback
    first = run_pytest(*common, "--benchmark-compare-fail=median:50%", "--benchmark-autosave")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    verdict = [ln for ln in out.splitlines() if ln.startswith("qbench gate:")]
    assert len(verdict) == 1 and verdict[0].startswith(f"qbench gate: PASS on machine {machine}"), verdict
    assert "same-run ratios only" in verdict[0] and "no stored latency baseline for this fingerprint" in verdict[0]
    assert "Traceback" not in out and "--benchmark-compare-fail ignored" in out
    assert len(list(runs.glob("*.json"))) == 1  # the passing run became this machine's baseline
    assert accuracies() == seen  # same model, same split, same machine: identical figures

    # 2. against that baseline, unmodified (a loose threshold: this is CI, not the gatecheck)
    second = run_pytest(*common, "--qbench-latency-threshold=3")
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert re.search(
        r"qbench gate: PASS .*accuracy of 2 variant\(s\) against stored per-image predictions; latency of 2 against", out
    )

    # 3. injected regressions: each named in one line, the run fails and stores nothing
    third = run_pytest(
        *common, "--benchmark-autosave", "--qbench-inject-slowdown=tflite-int8=4", "--qbench-inject-error=native=0.1"
    )
    out = third.stdout + third.stderr
    assert third.returncode == 1, out[-3000:]
    assert re.search(
        r"tflite-int8: slower: p10 latency [0-9.]+x its baseline \(95% CI [0-9.]+-[0-9.]+x\), wholly above 1.2x", out
    )
    assert re.search(r"native: accuracy regressed vs its stored predictions: \d+ images newly wrong, 0 newly right", out)
    assert "qbench gate: FAIL" in out and "Traceback" not in out
    assert "no baseline saved" in out
    assert len(list(runs.glob("*.json"))) == 1
