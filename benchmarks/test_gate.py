"""The regression gate (:mod:`qbench.gate`), one verdict per variant and check.

* accuracy: against the stored per-image predictions of this model and split
  (exact McNemar, alpha and margin configurable);
* latency: against this machine's stored run (``--benchmark-compare``,
  filed under its fingerprint), else on same-run ratios against ``native``.

A failure is one line (``pytest.fail(..., pytrace=False)``); the plugin ends
the summary with the overall verdict.
"""

from __future__ import annotations

import pytest

from qbench import backends, portable_baseline
from qbench.gate import confirmed, latency_verdict, ratio_verdict, stored_sketch
from qbench.stats import block_sketches


def _judge(qbench, verdict) -> None:
    qbench.record_verdict(verdict)
    if not verdict.ok:
        pytest.fail(verdict.line, pytrace=False)


def test_accuracy_gate(qbench, qbench_gate, qbench_evaluation, variant):
    from qbench.gate import accuracy_verdict

    path = qbench.portable_baseline_path(qbench_gate.baseline_dir)
    stored = portable_baseline.load(path).get(variant)
    if stored is None:
        pytest.skip(
            f"{variant}: no stored per-image predictions in {path} (a passing run with --qbench-portable-save records them)"
        )
    ev = qbench_evaluation
    _judge(qbench, accuracy_verdict(variant, ev.y_true, stored["predictions"], ev.y_pred, qbench_gate.alpha, qbench_gate.margin))


def test_latency_gate(qbench, qbench_gate, qbench_settings, variant, pytestconfig):
    bs = getattr(pytestconfig, "_benchmarksession", None)
    if bs is None or bs.disabled or bs.skip:
        pytest.skip("benchmarks disabled or skipped: no latency to gate")
    budget = float(pytestconfig.getoption("benchmark_max_time")), int(pytestconfig.getoption("benchmark_min_rounds"))
    stored = stored_sketch(bs, f"benchmarks/test_latency.py::test_latency[{variant}]")
    native = backends.reference_name()
    if stored is None:
        path = qbench.portable_baseline_path(qbench_gate.baseline_dir)
        stored_ratio = portable_baseline.load(path).get(variant, {}).get("p10_ratio_to_reference")
        if variant == native or native not in qbench_settings.variants or stored_ratio is None:
            pytest.skip(
                f"{variant}: no stored latency run for this machine, and no same-run ratio to gate "
                f"({native} is the reference; ratios live in {path})"
            )

    def verdict(campaign: int):
        current = block_sketches(qbench.latency_blocks(variant, *budget, campaign=campaign))
        if stored is not None:
            return latency_verdict(variant, current, stored[0], qbench_gate.threshold, qbench_gate.confidence)
        reference = block_sketches(qbench.latency_blocks(native, *budget, campaign=campaign))
        return ratio_verdict(variant, current, reference, native, stored_ratio, qbench_gate.threshold, qbench_gate.confidence)

    _judge(qbench, confirmed(verdict))
