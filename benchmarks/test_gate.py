"""The regression gate (:mod:`qbench.gate.verdicts`), one verdict per variant and check.

With a same-job base (``--qbench-base REF`` or ``--qbench-base-model PATH``)
both checks pair each variant with its base twin measured in this run:

* accuracy: exact McNemar on the images where candidate and base disagree;
* latency: the paired interval of candidate/base over the same interleaved rounds.

Peak memory (:mod:`qbench.measure.costs`) is gated like accuracy: against the
base twin's, measured in a fresh worker of its own, or against the stored run's
(``extra_info["peak_mib"]``); a regression is above ``--qbench-memory-threshold``
times it (default 1.1) and at least 1 MiB more.

Without one, accuracy is gated against the stored per-image predictions of
this model and split (recorded on the same kind of CPU), and latency against
this machine's stored run (``--benchmark-compare``, filed under its
fingerprint); with no stored run, latency is not gated and the test says so.

A failure is one line (``pytest.fail(..., pytrace=False)``); the plugin ends
the summary with the overall verdict and the mode that gated latency.
"""

from __future__ import annotations

import pytest

from qbench.core.errors import QBenchError
from qbench.core.stats import block_sketches
from qbench.gate import stored as portable_baseline
from qbench.gate.verdicts import (
    STORED_RUN,
    accuracy_verdict,
    base_latency_verdict,
    confirmed,
    latency_verdict,
    memory_verdict,
    stored_extra,
    stored_sketch,
)


def _skip_if_new(qbench, variant: str, check: str) -> None:
    """A variant the base revision does not have (added by the candidate) has nothing to be gated against."""
    if qbench.base is not None and qbench.base.lacks(variant):
        pytest.skip(f"{variant}: {check} not gated: new in this revision, not a variant at {qbench.base.label}")


def _judge(qbench, verdict) -> None:
    qbench.record_verdict(verdict)
    if not verdict.ok:
        pytest.fail(verdict.line, pytrace=False)


def test_accuracy_gate(qbench, qbench_gate, qbench_evaluation, variant):
    ev, gate = qbench_evaluation, qbench_gate
    _skip_if_new(qbench, variant, "accuracy")
    if qbench.base is not None:
        base = qbench.base_predictions(variant)  # a base that cannot run fails here, in one line
        label = qbench.base.label
        verdict = accuracy_verdict(variant, ev.y_true, base, ev.y_pred, gate.alpha, gate.margin, qbench.base.spec.mode, label)
        _judge(qbench, verdict)
        return
    path = qbench.portable_baseline_path(gate.baseline_dir)
    stored, why_not = portable_baseline.predictions_for(path, variant)
    if stored is None:
        pytest.skip(f"{variant}: accuracy not gated: {why_not}")
    _judge(qbench, accuracy_verdict(variant, ev.y_true, stored, ev.y_pred, gate.alpha, gate.margin))


def test_latency_gate(qbench, qbench_gate, variant, pytestconfig):
    bs = getattr(pytestconfig, "_benchmarksession", None)
    if bs is None or bs.disabled or bs.skip:
        pytest.skip("benchmarks disabled or skipped: no latency to gate")
    budget = float(pytestconfig.getoption("benchmark_max_time")), int(pytestconfig.getoption("benchmark_min_rounds"))
    gate = qbench_gate
    _skip_if_new(qbench, variant, "latency")
    if qbench.base is not None:
        label, mode = qbench.base.label, qbench.base.spec.mode

        def verdict(campaign: int):
            current = block_sketches(qbench.latency_blocks(variant, *budget, campaign=campaign))
            base = block_sketches(qbench.base_blocks(variant, *budget, campaign=campaign))
            return base_latency_verdict(variant, current, base, label, mode, gate.threshold, gate.confidence)

        _judge(qbench, confirmed(verdict))
        return
    stored = stored_sketch(bs, f"benchmarks/test_latency.py::test_latency[{variant}]")
    if stored is None:
        pytest.skip(
            f"{variant}: latency not gated: no --qbench-base and no stored run for this machine "
            "(ratios between variants do not carry across machines)"
        )

    def stored_verdict(campaign: int):
        current = block_sketches(qbench.latency_blocks(variant, *budget, campaign=campaign))
        return latency_verdict(variant, current, stored[0], gate.threshold, gate.confidence)

    _judge(qbench, confirmed(stored_verdict))


def test_memory_gate(qbench, qbench_gate, qbench_settings, variant, qbench_evaluation, pytestconfig):
    gate = qbench_gate
    current = qbench.costs(variant)
    if current is None or current.get("peak_mib") is None:
        pytest.skip(f"{variant}: memory not gated: not measured (--qbench-cost-samples 0, or no /proc/self/status)")
    if current["cost_samples"] < 2:
        pytest.skip(
            f"{variant}: memory not gated: one worker's peak (--qbench-cost-samples {current['cost_samples']}); "
            "two or more give the spread the gate needs"
        )
    _skip_if_new(qbench, variant, "memory")
    if qbench.base is not None:
        try:
            base = qbench.base_costs(variant)
        except QBenchError as exc:
            pytest.skip(f"{variant}: memory not gated: {exc}")
        label, mode = qbench.base.label, qbench.base.spec.mode
        _judge(qbench, memory_verdict(variant, current, base, gate.memory_threshold, mode, label))
        return
    bs = getattr(pytestconfig, "_benchmarksession", None)
    name = f"benchmarks/test_latency.py::test_latency[{variant}]"
    stored, spread = stored_extra(bs, name, "peak_mib"), stored_extra(bs, name, "peak_mib_range")
    if stored is not None and (stored_extra(bs, name, "cost_samples") or (0,))[0] < 2:
        pytest.skip(f"{variant}: memory not gated: the stored run has one worker's peak only (no spread)")
    if stored is None:
        pytest.skip(f"{variant}: memory not gated: no --qbench-base and no stored run with memory figures for this machine")
    baseline = {"peak_mib": stored[0], "peak_mib_range": spread[0] if spread else None}
    _judge(qbench, memory_verdict(variant, current, baseline, gate.memory_threshold, STORED_RUN, "the stored run"))
