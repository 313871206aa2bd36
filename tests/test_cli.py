"""What a user sees: ``pytest benchmarks ...`` run in a fresh process.

The end-to-end run uses the tiny ``smoke`` profile (a CI-sized model); the
real benchmark is ``pytest benchmarks`` with the default ``full`` profile.
"""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from qbench import backends
from tests.helpers import DEFAULT_VARIANTS, make_pet_tree, run_pytest


def _one_error_line(proc, needle: str) -> None:
    out = proc.stdout + proc.stderr
    assert needle in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--qbench-variants", "native,tflite-int4"],
            "ERROR: qbench: unknown variant(s) 'tflite-int4'; choose from " + ", ".join(backends.names()),
        ),
        (
            ["--qbench-dataset", "pet", "--qbench-dataset-root", "/nonexistent/pets"],
            "ERROR: qbench: dataset root /nonexistent/pets does not exist",
        ),
        (["--qbench-dataset", "pet"], "ERROR: qbench: --qbench-dataset pet needs --qbench-dataset-root"),
        (["--qbench-model-path", "/nonexistent/model.h5"], "ERROR: qbench: model file /nonexistent/model.h5 does not exist"),
        (["--qbench-profile", "huge"], "ERROR: qbench: unknown profile 'huge'"),
    ],
    ids=["unknown-variant", "missing-dataset-root", "pet-without-root", "missing-model", "unknown-profile"],
)
def test_bad_options_give_one_line(args, needle):
    proc = run_pytest("benchmarks", *args)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    _one_error_line(proc, needle)


def test_corrupt_model_file_gives_one_line(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"\x00" * 100)
    proc = run_pytest("benchmarks", "--qbench-model-path", str(bad))
    assert proc.returncode == 4
    _one_error_line(proc, f"ERROR: qbench: model file {bad} is corrupt: it is not a .keras zip archive")


def test_unloadable_model_stops_the_session_with_one_line(tmp_path):
    """Right magic bytes, broken content: found when the model is loaded; the run stops there."""
    bad = tmp_path / "model.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{broken")
    proc = run_pytest("benchmarks/test_accuracy.py", "--qbench-model-path", str(bad), "--benchmark-disable")
    assert proc.returncode == 4
    _one_error_line(proc, f"qbench: model file {bad} could not be loaded")
    assert "Interrupted: qbench: model file" in proc.stdout
    assert proc.stdout.count("could not be loaded") <= 3  # error line, short summary, interruption notice


def test_end_to_end_smoke_run(smoke_run, smoke_report):
    build, proc = smoke_run
    out = proc.stdout
    assert proc.returncode == 0, out[-5000:] + proc.stderr[-3000:]
    # progress was shown while training
    assert "[qbench] training MobileNetV2" in out and "[qbench] epoch 8/8" in out
    assert "calibrating int8 activations on 32 train-split samples" in out
    assert out.count("[qbench] using cached model") <= 1, "each build child's model line relayed again"
    # the summary table, with every variant
    assert "qbench summary" in out
    for variant in DEFAULT_VARIANTS:
        assert f"| {variant} | " in out
    data = json.loads((smoke_report / "summary.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == set(DEFAULT_VARIANTS)
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["native"]["speed_boost"] == 1.0
    for r in rows.values():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["median_latency_ms"] > 0 and r["size_bytes"] > 0
    assert rows["tflite-int8"]["size_reduction"] > 2.5  # int8 weights are 4x smaller than fp32
    for r in rows.values():  # percentiles and intervals, ordered (intervals come from 100-point sketches: 2 % slack)
        assert 0.98 * r["median_ci_low_ms"] <= r["p50_ms"] <= 1.02 * r["median_ci_high_ms"]
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    low, high = rows["tflite-int8"]["speed_boost_ci"]
    assert 0.98 * low <= rows["tflite-int8"]["speed_boost"] <= 1.02 * high
    # no portable baseline for the smoke model: the gate says what it could not gate, in one line
    assert "qbench gate: nothing gated" in out and "latency not gated" in out
    assert re.search(r"TVM kernels with tuned schedules: tvm-avx2-int8 \d+ \(from \S*tvm/tuning_db\)", out), out[-3000:]
    assert data["environment"]["calibration_split"] == "train"
    assert (smoke_report / "summary.md").read_text().startswith("# qbench summary")
    # the page people look at, and its figures
    assert (smoke_report / "index.html").stat().st_size > 10_000
    figures = {p.name for p in (smoke_report / "figures").glob("*.png")}
    assert {"accuracy_latency.png", "latency_distributions.png", "calibration.png", "layer_snr.png"} <= figures
    assert {f"confusion_{v}.png" for v in DEFAULT_VARIANTS} <= figures
    # nothing half-written left in the cache (but by tests.crash_variants' crash-build, which aborts mid-write by design,
    # when the isolation tests shared this build dir first; its next build removes it)
    assert not [p for p in build.rglob(".*") if p.is_file() and not p.name.startswith(".crash-build-")]


def test_pet_dataset_end_to_end(tmp_path):
    """The Oxford-IIIT Pet path, on a generated tree with three breeds.

    A few dozen images are too few to train MobileNetV2 from scratch, so this
    checks the plumbing (loader -> split -> training -> int8 calibration ->
    report), not accuracy: the thresholds are opened up.
    """
    root = make_pet_tree(tmp_path / "pet", per_class=20)
    proc = run_pytest(
        "benchmarks/test_accuracy.py",
        "--qbench-dataset", "pet",
        "--qbench-dataset-root", str(root),
        "--qbench-profile", "smoke",
        "--qbench-variants", "native,tflite-int8",
        "--qbench-build-dir", str(tmp_path / "build"),
        "--qbench-min-accuracy", "0",
        "--qbench-max-drop", "1",
        "--benchmark-disable",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "dataset pet: 48 train / 12 test images, 3 classes" in proc.stdout
    rows = json.loads((tmp_path / "build" / "report" / "summary.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["native", "tflite-int8"]
