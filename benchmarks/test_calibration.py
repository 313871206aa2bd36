"""The calibration study (:mod:`qbench.measure.calibration_study`): does int8 accuracy depend on the calibration set?

``tflite-int8`` is rebuilt for each fraction of the train split given by
``--qbench-calibration-fractions`` and for a one-class set next to a balanced
set of the same size; the rows land in the summary and the report.  The
checks below make sure the study measures what it says: every set comes from
the train split, each gives a model of its own, the one-class set really is
one class, and no set costs more than twice the gate's allowed drop.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from qbench.measure.calibration_study import STUDY_VARIANT


@pytest.fixture(scope="module")
def study(qbench, qbench_settings):
    if not qbench_settings.study_fractions:
        pytest.skip("calibration study off (--qbench-calibration-fractions none)")
    if STUDY_VARIANT not in qbench_settings.variants:
        pytest.skip(f"{STUDY_VARIANT} not selected: nothing to calibrate")
    return qbench.calibration_sets(), qbench.calibration_study()


def test_sets_come_from_the_train_split_with_the_asked_sizes(qbench, qbench_settings, study):
    sets, _ = study
    train = set(qbench.dataset.train_idx.tolist())
    n_train = len(train)
    for cset in sets:
        assert set(cset.indices.tolist()) <= train, f"{cset.label}: calibration images outside the train split"
        assert len(np.unique(cset.indices)) == cset.samples, f"{cset.label}: repeated images"
    fractions = [c for c in sets if c.kind == "fraction"]
    assert [c.fraction for c in fractions] == list(qbench_settings.study_fractions)
    for cset in fractions:
        assert cset.samples == max(1, round(cset.fraction * n_train)), cset.label


def test_one_class_set_draws_from_one_class(qbench, study):
    sets, _ = study
    (one,) = [c for c in sets if c.kind == "one-class"]
    (balanced,) = [c for c in sets if c.kind == "balanced"]
    labels = qbench.dataset.labels
    assert len(np.unique(labels[one.indices])) == 1
    assert (labels[qbench.dataset.train_idx] == labels[one.indices[0]]).sum() == one.samples  # all of that class
    assert balanced.samples == one.samples
    assert len(np.unique(labels[balanced.indices])) == qbench.dataset.num_classes


def test_each_set_gives_its_own_model(qbench, study):
    """Different calibration images must give different models (the sets reach the converter)."""
    sets, rows = study
    build_dir = qbench.builder.calibrated(sets[0].indices).dir
    digests = {}
    for cset, row in zip(sets, rows, strict=True):
        path = build_dir / row["artifact"]
        meta = qbench.builder.calibrated(cset.indices).build(STUDY_VARIANT).meta  # cached: reads its metadata
        assert meta["calibration_samples"] == cset.samples and meta["calibration_split"] == "train"
        digests[cset.label] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(set(digests.values())) == len(digests), f"identical models for different calibration sets: {digests}"


def test_no_calibration_set_costs_more_than_twice_the_allowed_drop(qbench_settings, study):
    """What holds with margin on the default model (measured: worst drop 0.022, at 0.8 of train; the
    one-class sets of all ten digits cost 0.008-0.017, the same as balanced sets of their size).
    Calibrating on one class is *not* asserted to hurt: on digits it did not."""
    _, rows = study
    limit = 2 * qbench_settings.accuracy_max_drop
    worst = max((r for r in rows if r["drop_vs_native"] is not None), key=lambda r: r["drop_vs_native"], default=None)
    if worst is None:
        pytest.skip("native not selected: no drop to compare")
    assert worst["drop_vs_native"] <= limit, (
        f"calibrated on {worst['label']}, tflite-int8 loses {worst['drop_vs_native']:.4f} against native (limit {limit:.4f})"
    )
