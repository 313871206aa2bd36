"""Single-image inference latency per variant (pytest-benchmark), end to end and invoke alone.

Every variant is timed on the same call: float32 image (1, H, W, 3) in,
float32 class scores out, so input quantization and output dequantization are
*included* for the int8 variants and the native baseline is graph-mode
TensorFlow (a concrete ``tf.function``), not Keras ``predict()``.  Inside each
call the runtime's own ``invoke`` (input already in its dtype, raw output) is
timed too: pytest-benchmark's statistics are the end-to-end times, and the
invoke figures go into ``extra_info`` (``invoke_median_ms`` and its
percentiles) and the summary.

Each variant runs in its own worker process and is timed there, call by call,
in rounds interleaved with the other variants while every other worker is
paused (:mod:`qbench.measure.latency`); the samples are handed to pytest-benchmark,
which computes, stores and compares the statistics as usual
(``pytest benchmarks --benchmark-compare``).
"""

from __future__ import annotations

import numpy as np
import pytest

from qbench import backends
from qbench.measure.latency import latency_figures, replay
from qbench.plugin import record_benchmark


def _budget(config) -> tuple[float, int]:
    return float(config.getoption("benchmark_max_time")), int(config.getoption("benchmark_min_rounds"))


def test_latency(benchmark, qbench, qbench_settings, variant, qbench_evaluation, qbench_artifact, pytestconfig):
    ev, art = qbench_evaluation, qbench_artifact
    benchmark.group = f"{qbench.dataset.name}: 1-image inference"
    benchmark.extra_info.update(
        {
            "variant": variant,
            "accuracy": round(ev.accuracy, 6),
            "size_bytes": art.size_bytes,
            "threads": qbench_settings.threads,
            "dataset": qbench.dataset.name,
            "profile": qbench_settings.profile.name,
            "image_size": qbench.dataset.image_size,
            "timing": "per call, in the variant's own worker process, rounds interleaved with the other variants",
        }
    )
    if benchmark.disabled:
        pytest.skip("--benchmark-disable: no timing")
    blocks = qbench.latency_blocks(variant, *_budget(pytestconfig), campaign=qbench.latest_campaign)
    invoke_blocks = qbench.latency_blocks(variant, *_budget(pytestconfig), campaign=qbench.latest_campaign, phase="invoke")
    samples = np.concatenate(blocks)
    assert len(samples) >= 5 and samples.min() > 0
    figures, invoke = latency_figures(blocks), latency_figures(invoke_blocks)
    assert np.all(np.concatenate(invoke_blocks) <= samples)  # invoke is timed inside each end-to-end call
    # the block sketch is what a later --benchmark-compare gates against (qbench.gate.verdicts)
    costs = qbench.results[variant].costs  # load time, first call, memory (benchmarks/test_costs.py)
    benchmark.extra_info.update({k: v for k, v in (costs or {}).items()})
    throughput = qbench.throughput(variant)  # images per second by batch and streams (benchmarks/test_throughput.py)
    if throughput and "error" not in throughput:
        benchmark.extra_info["throughput"] = throughput
        benchmark.extra_info["throughput_img_s"] = throughput.get("best_img_s")
    benchmark.extra_info["qbench_sketch_us"] = np.round(figures["sketch"] * 1e6, 3).tolist()
    benchmark.extra_info.update({f"{k}_ms": round(v * 1e3, 5) for k, v in figures.items() if k != "sketch"})
    for phase, figs in (("end_to_end", figures), ("invoke", invoke)):
        benchmark.extra_info.update({f"{phase}_{k}_ms": round(v * 1e3, 5) for k, v in figs.items() if k != "sketch"})
        benchmark.extra_info[f"{phase}_median_ms"] = benchmark.extra_info[f"{phase}_p50_ms"]
    replay(benchmark, samples)
    record_benchmark(qbench, variant, benchmark, extra={**figures, "invoke": invoke})


def test_latency_keras_predict_for_reference(benchmark, qbench, qbench_settings):
    """What Kenning times as its native baseline: ``model.predict()`` on one image.

    Not used for the summary table; it is recorded (in its own group) so the
    README can show how much a ``predict()`` baseline inflates every speed-up.
    """
    native = backends.reference_name()
    if native not in qbench_settings.variants:
        pytest.skip(f"{native} variant not selected")
    benchmark.group = f"{qbench.dataset.name}: reference, Keras predict() per image"
    benchmark.extra_info.update({"variant": "native-keras-predict", "threads": qbench_settings.threads})
    if benchmark.disabled:
        pytest.skip("--benchmark-disable: no timing")
    replay(benchmark, qbench.reference_samples(native, "keras_predict", 15))
    record_benchmark(qbench, "keras-predict", benchmark, reference=True)
