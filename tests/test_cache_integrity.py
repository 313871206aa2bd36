"""The build cache heals itself and is shared safely: corrupted artifacts, concurrent runs, SIGKILL mid-write.

Each test works on a copy of the smoke run's build dir (or a cold one), so
the other tests' cache is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qbench.backends.cache import read_record
from qbench.model.under_test import content_key
from tests.helpers import REPO, run_pytest

ARTIFACTS = {"native": ".keras", "tflite-int8": ".tflite", "tvm-avx2-int8": ".so"}
ACCURACY = ("benchmarks/test_accuracy.py", "-k", "accuracy_floor", "--qbench-profile=smoke", "--benchmark-disable")


def _copy(build: Path, dest: Path) -> Path:
    shutil.copytree(build, dest, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    return dest


def _artifact(build: Path, variant: str) -> Path:
    """The smoke model's artifact of ``variant`` (other tests on the smoke build dir may add other models' keys)."""
    pattern = re.compile(rf"{re.escape(variant)}-[0-9a-f]{{12}}{re.escape(ARTIFACTS[variant])}$")
    keys = {content_key(p, "unit") for p in build.glob("models/*/model.keras")}
    found = [p for p in (build / "variants").glob("*/*") if pattern.match(p.name) and (not keys or p.parent.name in keys)]
    assert len(found) == 1, found
    return found[0]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:2000])  # what a full disk or a cut-short cache restore leaves


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def replace(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, replace], ids=["truncated", "flipped", "replaced"])
def test_every_damage_to_every_kind_of_artifact_fails_its_record(smoke_run, tmp_path, damage):
    """The record check that decides a rebuild, on the smoke run's real .keras, .tflite and .so, each damaged each way."""
    build = _copy(smoke_run[0], tmp_path / "build")
    for variant in ARTIFACTS:
        path = _artifact(build, variant)
        assert read_record(path)[1] is None
        damage(path)
        why = read_record(path)[1]
        assert why is not None and why.startswith("size/sha256"), (variant, why)


def test_corrupted_artifacts_are_rebuilt_with_one_line(smoke_run, tmp_path):
    """A run on a build dir whose .keras is truncated, .tflite flipped and .so replaced: each rebuilt, one line each,
    no SIGBUS (the damage kinds each artifact gets in other combinations: the test above, through the same record)."""
    build = _copy(smoke_run[0], tmp_path / "build")
    damage = (truncate, flip_a_byte, replace)
    paths = {}
    for i, variant in enumerate(ARTIFACTS):
        paths[variant] = _artifact(build, variant)
        damage[i](paths[variant])
    proc = run_pytest(*ACCURACY, f"--qbench-build-dir={build}", f"--qbench-variants={','.join(ARTIFACTS)}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for variant, path in paths.items():
        line = f"{variant}: cached artifact {path} does not match its record (size/sha256"
        assert out.count(line) == 1, (variant, out[-4000:])
        assert read_record(path)[1] is None  # rebuilt, and its record matches again
    assert "SIGBUS" not in out and "Traceback" not in out


def test_two_runs_at_once_on_a_cold_build_dir_build_each_artifact_once(tmp_path):
    build = tmp_path / "cold"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *ACCURACY, f"--qbench-build-dir={build}"]
    cmd.append("--qbench-variants=native,tflite-int8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    runs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"]
    outs = [p.communicate(timeout=900)[0] for p in runs]
    for p, out in zip(runs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
    both = "\n".join(outs)
    assert both.count("trained in") == 1, both[-4000:]  # the smoke model, trained by one run
    for variant in ("native", "tflite-int8"):
        assert len(re.findall(rf"building {variant} -> ", both)) == 1, (variant, both[-4000:])
        meta = json.loads(Path(str(_artifact(build, variant)) + ".json").read_text())
        assert meta["built_by"]["pid"] > 0 and read_record(_artifact(build, variant))[1] is None
    assert "waiting for another run" in both


def _run_until(args, marker: str, env: dict | None = None) -> tuple[str, int]:
    """Start pytest in its own process group, SIGKILL the whole group once ``marker`` shows in its output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(600, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait()
    finally:
        watchdog.cancel()
    return "".join(lines), proc.returncode


def _partial_files(root: Path) -> list[Path]:
    """Files a later run would read that are not whole: artifacts that do not match their record, JSON that does not parse."""
    bad = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError:
                bad.append(path)
        elif path.suffix in (".tflite", ".so", ".keras") and path.parent.parent.name == "variants" and read_record(path)[1]:
            bad.append(path)
    return bad


def test_sigkill_mid_build_mid_store_and_mid_report_leaves_nothing_partial(smoke_run, tmp_path):
    build = _copy(smoke_run[0], tmp_path / "build")
    storage = tmp_path / "storage"
    common = (
        "benchmarks/test_latency.py::test_latency",
        "--qbench-profile=smoke",
        f"--qbench-build-dir={build}",
        "--qbench-variants=tflite-fp32,tflite-int8",  # a native worker costs 3-4 s of imports a run, five runs
        "--benchmark-max-time=0.2",
        f"--benchmark-storage=file://{storage}",
        "--qbench-baseline-max-spread=100",  # a noisy CI runner must not refuse the stored run this test needs
        "--qbench-throughput-batches=none",  # not what this test is about (CI minutes)
    )
    int8 = _artifact(build, "tflite-int8")
    int8.unlink()
    out, rc = _run_until(common, "building tflite-int8 -> ")  # the conversion takes seconds: killed inside it
    assert rc == -signal.SIGKILL, out[-3000:]
    assert not int8.exists() and not _partial_files(build)

    # mid-store: pytest-benchmark's stored run, held open inside its write
    out, rc = _run_until(
        (*common, "-p", "tests.slow_writes", "--benchmark-autosave"), "@slow-write", {"QBENCH_SLOW_WRITE": "0001_"}
    )
    assert rc == -signal.SIGKILL and "@slow-write" in out, out[-3000:]
    assert "building tflite-int8 -> " in out  # this run rebuilt the artifact the first one was killed building
    assert not list(storage.rglob("0001_*.json")) and not _partial_files(storage) and not _partial_files(build)

    # mid-report: summary.json held open inside its write
    out, rc = _run_until((*common, "-p", "tests.slow_writes"), "@slow-write", {"QBENCH_SLOW_WRITE": "summary.json"})
    assert rc == -signal.SIGKILL and "@slow-write" in out, out[-3000:]
    assert not _partial_files(build)

    # and the next run is green, stores its run and compares with nothing half-written
    proc = run_pytest(*common, "--benchmark-autosave")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert len(list(storage.rglob("0001_*.json"))) == 1, (proc.stdout + proc.stderr)[-3000:]
    proc = run_pytest(*common, "--benchmark-compare")
    assert proc.returncode == 0 and "Traceback" not in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    assert json.loads((build / "report" / "summary.json").read_text())["rows"]
