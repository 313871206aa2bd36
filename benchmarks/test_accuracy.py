"""Accuracy regression gates for every variant on the held-out test split."""

from __future__ import annotations

import numpy as np
import pytest

NON_NATIVE = ("tflite-fp32", "tflite-int8", "tvm-avx2-int8")


def test_accuracy_floor(qbench_evaluation, qbench_settings, variant):
    ev = qbench_evaluation
    floor = qbench_settings.accuracy_floor
    assert ev.accuracy >= floor, f"{variant}: accuracy {ev.accuracy:.4f} is below the floor {floor:.4f}"


@pytest.mark.qbench_variants(*NON_NATIVE)
def test_accuracy_drop_vs_native(qbench, qbench_evaluation, qbench_settings, variant):
    if "native" not in qbench_settings.variants:
        pytest.skip("native variant not selected: no reference to compare against")
    native = qbench.evaluation("native").accuracy
    acc = qbench_evaluation.accuracy
    limit = qbench_settings.accuracy_max_drop
    assert native - acc <= limit + 1e-12, (
        f"{variant}: accuracy {acc:.4f} dropped {native - acc:.4f} below native {native:.4f} (allowed {limit:.4f})"
    )


def test_confusion_matrix_is_consistent(qbench, qbench_evaluation):
    ev = qbench_evaluation
    cm = np.asarray(ev.metrics["confusion_matrix"])
    n = len(ev.y_true)
    assert cm.shape == (qbench.dataset.num_classes,) * 2
    assert cm.sum() == n
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(ev.y_true, minlength=cm.shape[0]))
    assert np.trace(cm) / n == pytest.approx(ev.accuracy)
    for key in ("precision", "recall", "f1", "g_mean"):
        assert 0.0 <= ev.metrics[key] <= 1.0


def test_scores_are_probabilities(qbench, qbench_evaluation, variant):
    """Softmax outputs (dequantized for int8): finite, in [0, 1], summing to ~1."""
    scores = qbench_evaluation.scores
    assert np.all(np.isfinite(scores))
    assert scores.min() >= 0.0 and scores.max() <= 1.0 + 1e-6
    # int8 softmax output has a 1/256 grid: the sum can miss 1 by ~classes/512.
    tol = 1e-3 if variant in ("native", "tflite-fp32") else qbench.dataset.num_classes / 256
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=tol)


@pytest.mark.qbench_variants("tflite-fp32")
def test_tflite_fp32_matches_native(qbench, qbench_evaluation, qbench_settings, variant):
    """FP32 conversion must not change the model: same predictions, tiny numeric drift."""
    if "native" not in qbench_settings.variants:
        pytest.skip("native variant not selected")
    native = qbench.evaluation("native")
    fp32 = qbench_evaluation
    agree = np.mean(native.y_pred == fp32.y_pred)
    assert agree >= 0.99, f"tflite-fp32 agrees with native on only {agree:.3%} of test images"
    assert np.max(np.abs(native.scores - fp32.scores)) < 1e-3
