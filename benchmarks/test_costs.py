"""What each variant costs beyond one warm call: load time, first call, resident memory (qbench.measure.costs).

Measured over ``--qbench-cost-samples`` fresh worker processes (the
variant's own worker and more), one at a time and outside the latency
campaigns; the figures go into the summary's second table, summary.json,
index.html and the variant's pytest-benchmark ``extra_info``.
"""

from __future__ import annotations

import pytest


def test_costs(qbench, qbench_settings, variant, qbench_evaluation):
    wanted = qbench_settings.n_cost_samples
    if wanted == 0:
        pytest.skip("--qbench-cost-samples 0: costs not measured")
    costs = qbench.costs(variant)
    if costs is None:
        pytest.skip("costs are measured in isolated worker processes only")
    assert costs["cost_samples"] == wanted
    assert costs["load_ms"] > 0 and costs["first_call_ms"] > 0
    if costs.get("peak_mib") is not None and costs.get("load_mib") is not None:
        # the peak is taken from the loaded state on: it cannot be much below what loading left resident
        assert costs["peak_mib"] >= costs["load_mib"] - 2.0, costs
