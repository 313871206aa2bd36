"""Accuracy regression gates for every variant on the held-out test split."""

from __future__ import annotations

import numpy as np
import pytest

from qbench import backends


def _reference(qbench_settings) -> str:
    native = backends.reference_name()
    if native not in qbench_settings.variants:
        pytest.skip(f"{native} variant not selected: no reference to compare against")
    return native


def test_accuracy_floor(qbench_evaluation, qbench_settings, variant):
    ev = qbench_evaluation
    floor = qbench_settings.accuracy_floor
    assert ev.accuracy >= floor, f"{variant}: accuracy {ev.accuracy:.4f} is below the floor {floor:.4f}"


@pytest.mark.qbench_variants_where(lambda v: not v.is_reference)
def test_accuracy_drop_vs_native(qbench, qbench_evaluation, qbench_settings, variant):
    native = _reference(qbench_settings)
    reference = qbench.evaluation(native).accuracy
    acc = qbench_evaluation.accuracy
    limit = qbench_settings.accuracy_max_drop
    assert reference - acc <= limit + 1e-12, (
        f"{variant}: accuracy {acc:.4f} dropped {reference - acc:.4f} below {native} {reference:.4f} (allowed {limit:.4f})"
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


def _grid_step(scores: np.ndarray) -> float | None:
    """The step of a grid the float scores lie on (a softmax quantized inside the graph, e.g. ONNX QDQ), or None."""
    values = np.unique(scores)
    if len(values) < 3:
        return None
    steps = np.diff(values)
    step = float(steps.min())
    on_grid = np.allclose(steps / step, np.round(steps / step), atol=1e-3)
    return step if on_grid and step > 1e-6 else None


def test_scores_are_probabilities(qbench, qbench_evaluation, qbench_runner, variant):
    """Softmax outputs (dequantized for quantized outputs): finite, in [0, 1], summing to ~1."""
    scores = qbench_evaluation.scores
    assert np.all(np.isfinite(scores))
    assert scores.min() >= 0.0 and scores.max() <= 1.0 + 1e-6
    out_q = qbench_runner.output_qparams
    # a quantized softmax output has a grid of `scale`: the sum can miss 1 by about a step per class.
    step = out_q.scale if out_q is not None else (qbench_runner.score_step or _grid_step(scores))
    tol = max(1e-3, qbench.dataset.num_classes * step) if step else 1e-3
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=tol)


@pytest.mark.qbench_variants_where(lambda v: v.lossless_tolerance is not None and not v.is_reference)
def test_lossless_variants_match_native(qbench, qbench_evaluation, qbench_settings, variant):
    """A conversion that should not change the model (fp32, fp16 weights): same predictions,
    scores within the variant's declared tolerance."""
    tolerance = backends.get(variant).lossless_tolerance
    native = _reference(qbench_settings)
    reference = qbench.evaluation(native)
    agree = np.mean(reference.y_pred == qbench_evaluation.y_pred)
    assert agree >= 0.99, f"{variant} agrees with {native} on only {agree:.3%} of test images"
    worst = float(np.max(np.abs(reference.scores - qbench_evaluation.scores)))
    assert worst <= tolerance, f"{variant}: scores differ from {native} by up to {worst:.2e} (declared tolerance {tolerance:.0e})"
