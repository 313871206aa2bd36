"""Single-image end-to-end inference latency per variant (pytest-benchmark).

Every variant is timed on the same call: float32 image (1, H, W, 3) in,
float32 class scores out, so input quantization and output dequantization are
*included* for the int8 variants and the native baseline is graph-mode
TensorFlow (a concrete ``tf.function``), not Keras ``predict()``.

Compare against the stored baseline with ``pytest benchmarks --benchmark-compare``.
"""

from __future__ import annotations

import numpy as np
import pytest

from qbench.plugin import record_benchmark


def test_latency(benchmark, qbench, qbench_settings, variant, qbench_runner, qbench_evaluation, qbench_artifact):
    runner, ev, art = qbench_runner, qbench_evaluation, qbench_artifact  # the evaluation also warmed the runtime up
    x, _ = qbench.test_inputs()
    sample = np.ascontiguousarray(x[:1])

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
        }
    )
    scores = benchmark(runner.predict, sample)
    assert scores.shape == (1, qbench.dataset.num_classes)
    assert np.argmax(scores) == ev.y_pred[0], "benchmarked call disagrees with the evaluation run"
    record_benchmark(qbench, variant, benchmark)


def test_latency_keras_predict_for_reference(benchmark, qbench, qbench_settings):
    """What Kenning times as its native baseline: ``model.predict()`` on one image.

    Not used for the summary table; it is recorded (in its own group) so the
    README can show how much a ``predict()`` baseline inflates every speed-up.
    """
    if "native" not in qbench_settings.variants:
        pytest.skip("native variant not selected")
    model = qbench.runner("native").model
    x, _ = qbench.test_inputs()
    sample = np.ascontiguousarray(x[:1])
    model.predict(sample, verbose=0)  # build the predict function once
    benchmark.group = f"{qbench.dataset.name}: reference, Keras predict() per image"
    benchmark.extra_info.update({"variant": "native-keras-predict", "threads": qbench_settings.threads})
    scores = benchmark(model.predict, sample, verbose=0)
    assert scores.shape == (1, qbench.dataset.num_classes)
    record_benchmark(qbench, "keras-predict", benchmark, reference=True)
