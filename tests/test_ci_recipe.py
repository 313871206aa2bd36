"""The CI recipe's command (README, ``.github/workflows/qbench-gate.yml``) on a real two-commit repository.

The workflow itself cannot run here, so this runs what it runs,
``pytest benchmarks --qbench-base origin/main``, in a temporary git
repository holding this project with a committed model file: the first
commit is ``origin/main``, the second really changes what gets built (the
int8 variant calibrates on one image instead of the profile's 32).  The base
is checked out and built with the first commit's code; the verdict lines
must name it, pair every variant, and catch the int8 change.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from tests.helpers import REPO, run_pytest

GIT = ("git", "-c", "user.name=qbench test", "-c", "user.email=test@qbench.invalid", "-c", "commit.gpgsign=false")


def _git(repo, *args) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _project_copy(repo) -> None:
    """This project's tracked files (as they are in the working tree) in a new repository."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for name in (t.decode() for t in tracked if t):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)


def test_the_ci_command_gates_a_real_change_against_origin_main(smoke_run, tmp_path):
    build, _ = smoke_run
    repo = tmp_path / "project"
    repo.mkdir()
    _project_copy(repo)
    shutil.copy2(next(build.glob("models/*/model.keras")), repo / "model.keras")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base: the smoke model, calibrated on 32 train images")
    base_sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", "refs/remotes/origin/main", base_sha)  # what actions/checkout with fetch-depth 0 gives

    config = repo / "qbench" / "config.py"
    text = config.read_text()
    smoke = text.index('"smoke": Profile(')
    start = text.index("calibration_samples=32,", smoke)
    config.write_text(text[:start] + "calibration_samples=1," + text[start + len("calibration_samples=32,") :])
    _git(repo, "commit", "-qam", "candidate: calibrate int8 on one image")

    proc = run_pytest(
        "benchmarks/test_gate.py",
        "--qbench-base",
        "origin/main",
        "--qbench-profile=smoke",
        "--qbench-model-path=model.keras",
        "--qbench-build-dir=build",  # relative, as in the workflow: the twins' workers start in the base's checkout
        "--qbench-variants=native,tflite-int8",
        "--benchmark-max-time=0.3",
        "--qbench-latency-threshold=2",  # CI is noisy; the gatecheck measures the gate's rates at 1.2x
        "--qbench-cost-samples=0",  # memory is not what this test gates: no fresh native worker a side (5 s each)
        cwd=repo,
    )
    out = proc.stdout + proc.stderr
    label = f"base {base_sha[:12]} (origin/main)"
    assert f"{label}: checking out {base_sha[:12]}" in out, out[-3000:]
    assert f"{label}: building native, tflite-int8 with its own code" in out
    assert re.search(rf"{re.escape(label)}: calibrating int8 activations on 32 train-split samples", out)
    assert "calibrating int8 activations on 1 train-split samples" in out  # the candidate's own build
    # every variant paired with its twin, in one line each, the mode named in the verdict
    gate = json.loads((repo / "build" / "report" / "gate.json").read_text())
    assert gate["mode"] == f"same-job base {base_sha}"
    checks = {(v["variant"], v["check"]): v for v in gate["verdicts"]}
    assert set(checks) == {(v, c) for v in ("native", "tflite-int8") for c in ("accuracy", "latency")}
    assert checks[("native", "accuracy")]["ok"] and checks[("native", "accuracy")]["figures"]["worse"] == 0  # same model file
    int8 = checks[("tflite-int8", "accuracy")]
    assert int8["figures"]["worse"] + int8["figures"]["better"] > 0  # the change reached the candidate's predictions
    verdict = gate["verdict"]
    assert f"against same-job base {base_sha}" in verdict
    if int8["ok"]:
        assert proc.returncode == 0 and verdict.startswith("qbench gate: PASS"), out[-3000:]
    else:
        assert proc.returncode == 1 and "tflite-int8 accuracy" in verdict
        assert re.search(rf"tflite-int8: accuracy regressed vs {re.escape(label)}: \d+ images newly wrong", out)
    assert "Traceback" not in out


def test_a_base_that_cannot_be_resolved_is_one_line(tmp_path):
    proc = run_pytest("benchmarks/test_gate.py", "--qbench-base", "no-such-branch", "--qbench-profile=smoke")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert "qbench: --qbench-base no-such-branch: no such revision in" in out and "Traceback" not in out
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    shutil.copy2(REPO / "conftest.py", outside / "conftest.py")
    proc = run_pytest("--qbench-base", "HEAD", "--co", "-q", cwd=outside)
    out = proc.stdout + proc.stderr
    assert "is not inside a git repository (compare two model files with --qbench-base-model)" in out, out[-2000:]
    proc = run_pytest("--qbench-base", "HEAD", "--qbench-base-model", "m.keras", "--co", "-q")
    assert "--qbench-base and --qbench-base-model exclude each other" in proc.stdout + proc.stderr
