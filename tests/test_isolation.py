"""Isolation and containment, end to end: ``pytest benchmarks`` with test-only variants registered.

Both runs reuse the smoke run's build directory (model and variants cached).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import run_pytest

# one healthy variant of each kind of worker beside the crashing ones: TensorFlow, LiteRT, a TVM .so
HEALTHY = ("native", "tflite-int8", "tvm-avx2-int8")
CRASHING = ("crash-build", "crash-abort", "crash-segv", "load-error")


def _run(build, *args):
    paths = [a for a in args if a.startswith("benchmarks/")] or ["benchmarks"]
    rest = [a for a in args if not a.startswith("benchmarks/")]
    return run_pytest(
        *paths, "--qbench-profile", "smoke", "--qbench-build-dir", str(build), "--benchmark-max-time", "0.3", *rest
    )  # fmt: skip


@pytest.fixture(scope="module")
def crash_run(smoke_run):
    """A healthy variant of each worker kind beside the crashing ones, through the steps they crash in (accuracy and
    latency); all nine default variants here cost 20-25 s more of CI for no path these three do not take."""
    build, first = smoke_run
    assert first.returncode == 0, first.stdout[-3000:]
    variants = "--qbench-variants=" + ",".join(HEALTHY + CRASHING)
    return build, _run(build, "-p", "tests.crash_variants", variants, "benchmarks/test_accuracy.py", "benchmarks/test_latency.py")


def test_native_crashes_fail_only_their_variant(crash_run):
    build, proc = crash_run
    out = proc.stdout
    assert proc.returncode == 1, f"exit {proc.returncode}\n" + out[-4000:] + proc.stderr[-2000:]
    # one line per crash under the summary, naming variant, step and signal, with where it happened
    summary = out[out.index("qbench summary") :]
    for variant, step, sig in (
        ("crash-build", "build", "SIGABRT"),
        ("crash-abort", "accuracy", "SIGABRT"),
        ("crash-segv", "latency", "SIGSEGV"),
    ):
        lines = [ln for ln in summary.splitlines() if ln.startswith(f"qbench: {variant}: crashed during {step} ({sig}")]
        assert len(lines) == 1, (variant, out[-4000:])
        assert "last stderr:" in lines[0]
    assert re.search(r"qbench: crash-abort: .*Fatal Python error: Aborted \| at File .*crash_variants.py", summary), summary
    assert re.search(r"qbench: crash-build: .*Fatal Python error: Aborted \| at File .*crash_variants.py", summary), summary
    assert "Traceback" not in out
    # each crash reported once per variant and step by the test that met it; its other tests skip with a reference
    first = min((out.index(h) for h in ("= ERRORS =", "= FAILURES =") if h in out), default=len(out))
    last = min(i for i in (out.find("qbench summary", first), out.find("short test summary info", first)) if i >= 0)
    reports = out[first:last]  # the per-test reports (setup errors and failures), before qbench's summary
    for variant, step in (("crash-abort", "accuracy"), ("crash-segv", "latency"), ("crash-build", "build")):
        assert reports.count(f"qbench: {variant}: crashed during {step}") == 1, (variant, reports[-3000:])
    assert re.search(r"SKIPPED \[\d+\] .*crash-abort: crashed during accuracy \(SIGABRT, signal 6\) \(reported by ", out)
    # the summary is printed and written, every other variant measured
    assert "qbench summary" in out
    rows = {r["variant"]: r for r in json.loads((build / "report" / "summary.json").read_text())["rows"]}
    assert set(rows) == set(HEALTHY + CRASHING), sorted(rows)
    for variant in HEALTHY:
        assert rows[variant]["status"] == "ok" and rows[variant]["median_latency_ms"] > 0, rows[variant]
    assert rows["crash-segv"]["status"] == "FAILED: crashed during latency (SIGSEGV, signal 11)"
    assert rows["crash-build"]["status"].startswith("FAILED: crashed during build (SIGABRT")
    # a fresh artifact its runtime refuses is that variant's failure, said once, not a stale cache rebuilt
    assert rows["load-error"]["status"].startswith("FAILED: load-error: the runtime cannot load"), rows["load-error"]
    assert "artifact unusable" not in out and out.count("building load-error") == 1
    # the second run on the smoke run's build dir reused its cache: the model and every default variant
    assert "[qbench] using cached model" in out and "training MobileNetV2" not in out
    assert not [v for v in HEALTHY if f"building {v} " in out], out[-3000:]
    # only the failing variants' tests failed
    failed = re.findall(r"^(?:FAILED|ERROR) \S+\[([^\]]+)\]", out, flags=re.M)
    assert failed and set(failed) <= {"crash-build", "crash-abort", "crash-segv", "load-error"}, failed


def test_latency_excludes_the_harness(smoke_run):
    """Known workloads: a no-op reads (nearly) zero, a 200 us busy-wait reads 200 us.

    A round trip through the worker's pipe costs tens of microseconds; if it
    were in the figures, ``noop`` would show it.
    """
    build, first = smoke_run
    assert first.returncode == 0
    proc = _run(build, "-p", "tests.timing_variants", "--qbench-variants", "noop,busy-200us", "-k", "test_latency")
    assert proc.returncode == 0, proc.stdout[-4000:]
    rows = {r["variant"]: r for r in json.loads((build / "report" / "summary.json").read_text())["rows"]}
    noop, busy = rows["noop"]["median_latency_ms"], rows["busy-200us"]["median_latency_ms"]
    assert noop < 0.005, f"no-op median {noop * 1e3:.1f} us: harness overhead leaks into the figures"
    assert 0.200 <= busy < 0.215, f"200 us busy-wait measured {busy * 1e3:.1f} us"
