"""Images per second by batch size and with concurrent streams (qbench.measure.throughput).

Batch 1 is the latency campaign's own calls (``Runner.batch_runner(1)`` is
the runner latency times, for every runtime), so its images per second
must read 1 / the median latency, within 10 %, unless the calls have a
tail: then they read 1 / the mean, and the test says so in one line
(skipped).  Where neither holds, the rate was not computed from the calls
it names, and the test fails.

Timed again in a campaign of its own (the design before 2026-12-06), the
same calls read 0.84-1.40x 1 / the median latency over five warm runs on an
AVX-512 VNNI VM: the machine's phase between two campaigns, not the batch
path (docs/measurements.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from qbench.measure.throughput import BATCH_1_ONLY

AGREEMENT = 0.10  # batch-1 images per second x the median latency, at most this far from 1


def test_throughput(qbench, qbench_settings, variant, qbench_evaluation, pytestconfig):
    budget = float(pytestconfig.getoption("benchmark_max_time")), int(pytestconfig.getoption("benchmark_min_rounds"))
    figures = qbench.throughput(variant, *budget)
    if figures is None:
        pytest.skip("throughput not measured (not isolated, or --qbench-throughput-batches none and no streams)")
    assert "error" not in figures, f"{variant}: throughput: {figures.get('error')}"
    for batch, fig in figures["batches"].items():
        assert fig == BATCH_1_ONLY or (fig["img_s"] > 0 and fig["range"][0] <= fig["img_s"] <= fig["range"][1]), (batch, fig)
    if qbench_settings.streams > 1:
        assert figures["streams"]["count"] == qbench_settings.streams and figures["streams"]["img_s"] > 0, figures
    one = figures["batches"].get("1")
    if not isinstance(one, dict):
        pytest.skip(f"{variant}: batch 1 not measured (--qbench-throughput-batches {qbench_settings.batches})")
    calls = np.concatenate(qbench.latency_blocks(variant, *budget, campaign=qbench.latest_campaign))
    median, mean = float(np.median(calls)), float(np.mean(calls))
    ratio = one["img_s"] * median
    if abs(ratio - 1) <= AGREEMENT:
        return
    line = f"{variant}: batch-1 throughput {one['img_s']:.0f} img/s is {ratio:.3f}x 1 / its median latency"
    if abs(one["img_s"] * mean - 1) <= AGREEMENT:
        pytest.skip(f"{line}: its calls have a tail (mean {mean / median:.2f}x the median), so it reads 1 / their mean")
    pytest.fail(f"{line} and {one['img_s'] * mean:.3f}x 1 / its mean: not the rate of the calls it was read from")
