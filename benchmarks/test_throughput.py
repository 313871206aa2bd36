"""Images per second by batch size and with concurrent single-image streams (qbench.measure.throughput).

Batch 1 in the variant's own worker makes the same calls its latency
times.  In every round of the throughput campaign the latency call and a
batch-1 call are also made in turn, call by call, in that worker
(``batch_1_vs_latency_call``): the median over rounds of their median
calls' ratio must be within 10 % of 1, or the batch path is not making the
call it says.  Where it is not but some round agrees, the variant is too
noisy here to tell (one line, skipped); where no round agrees, the test
fails.  Calls in turn, because adjacent blocks were not alike enough:
LiteRT's rounds on the smoke model read 0.73-2.6x apart (its speed modes)
and tflite-dynamic's 0.07-0.55x on another VM (its 2-thread tail), and
both failed CI runs.

Against 1 / the median latency of the run's latency campaign (another
campaign, minutes earlier) the summary records the product
(``throughput_b1_x_median``) rather than asserting it: a runtime can change
speed between campaigns (LiteRT on the smoke model switched between about
37 and 57 us a call on this VM), and a variant whose calls have a heavy
tail reads below 1 (``tflite-dynamic``: 0.74 on the default model, one run,
docs/measurements.md).
"""

from __future__ import annotations

import pytest

from qbench.measure.throughput import BATCH_1_ONLY

AGREEMENT = 0.10  # batch-1 images per second over the latency call's, at most this far from 1


def test_throughput(qbench, qbench_settings, variant, qbench_evaluation):
    figures = qbench.throughput(variant)
    if figures is None:
        pytest.skip("throughput not measured (not isolated, or --qbench-throughput-batches none and no streams)")
    assert "error" not in figures, f"{variant}: throughput: {figures.get('error')}"
    for batch, fig in figures["batches"].items():
        assert fig == BATCH_1_ONLY or (fig["img_s"] > 0 and fig["range"][0] <= fig["img_s"] <= fig["range"][1]), (batch, fig)
    if qbench_settings.streams > 1:
        assert figures["streams"]["count"] == qbench_settings.streams and figures["streams"]["img_s"] > 0, figures
    one, call = figures["batches"].get("1"), figures.get("latency_call")
    paired = figures.get("batch_1_vs_latency_call")
    if not isinstance(one, dict) or call is None or paired is None:
        pytest.skip(f"{variant}: batch 1 not measured (--qbench-throughput-batches {qbench_settings.batches})")
    ratio, (low, high) = paired["median"], paired["range"]
    if abs(ratio - 1) <= AGREEMENT:
        return
    line = (
        f"{variant}: a batch-1 call against the latency call, made in turn: {ratio:.3f}x its rate (median calls), "
        f"round by round {low:.3f}-{high:.3f}x over {paired['rounds']} rounds"
    )
    if low <= 1.0 <= high:  # some rounds agree: the variant's own noise, not the measurement
        pytest.skip(f"{line}, not within {AGREEMENT:.0%}, but some rounds agree: too noisy to tell on this machine")
    pytest.fail(f"{line}, not within {AGREEMENT:.0%} in any round")
