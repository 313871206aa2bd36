"""The calibration study: how much the int8 model depends on what it was calibrated on.

After the dl-in-iot quantization lab: ``tflite-int8`` is rebuilt for several
fractions of the train split (``--qbench-calibration-fractions``, default
0.01, 0.08, 0.3, 0.8) and once on images of a single class (chosen by seed),
next to a balanced sample of the same size, and every model is evaluated on
the same test split.  Calibration only sets the activation ranges, so what a
bad calibration costs shows up as accuracy lost against ``native``.

Every set is drawn from the *train* split; each model is cached like any
variant (its key holds the calibration indices) under
``build/variants/<model>/calibration/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STUDY_VARIANT = "tflite-int8"


@dataclass(frozen=True)
class CalibrationSet:
    label: str
    kind: str  # "fraction", "one-class" or "balanced" (the one-class set's size, stratified)
    indices: np.ndarray  # into the dataset, train split only
    fraction: float | None = None
    class_name: str | None = None

    @property
    def samples(self) -> int:
        return len(self.indices)


def calibration_sets(dataset, fractions, seed: int) -> list[CalibrationSet]:
    """The study's calibration sets: one per fraction, one class, and a balanced set of the one class's size."""
    n_train = len(dataset.train_idx)
    sets = []
    for fraction in fractions:
        n = max(1, round(fraction * n_train))
        idx = dataset.calibration_indices(n, seed + 11)
        sets.append(CalibrationSet(f"{fraction:g} of train", "fraction", idx, fraction=fraction))
    rng = np.random.default_rng(seed + 12)
    train_labels = dataset.labels[dataset.train_idx]
    cls = int(rng.choice(np.unique(train_labels)))
    one = np.sort(dataset.train_idx[train_labels == cls])
    name = dataset.class_names[cls] if dataset.class_names else str(cls)
    sets.append(CalibrationSet(f"one class ({name})", "one-class", one, class_name=name))
    balanced = dataset.calibration_indices(len(one), seed + 13)
    sets.append(CalibrationSet("balanced, one-class size", "balanced", balanced))
    return sets


def build_models(builder, sets, progress=lambda _m: None) -> list:
    """Build (or reuse) the study variant for each set; returns the artifacts in the same order."""
    artifacts = []
    for i, cset in enumerate(sets, 1):
        progress(f"calibration study {i}/{len(sets)}: {STUDY_VARIANT} calibrated on {cset.label}")
        artifacts.append(builder.calibrated(cset.indices).build(STUDY_VARIANT))
    return artifacts


def study_rows(sets, artifacts, accuracies, reference_accuracy: float | None) -> list[dict]:
    """One row per calibration set: what it was, its model, accuracy and drop vs the reference."""
    rows = []
    for cset, art, acc in zip(sets, artifacts, accuracies, strict=True):
        rows.append(
            {
                "label": cset.label,
                "kind": cset.kind,
                "fraction": cset.fraction,
                "class": cset.class_name,
                "samples": cset.samples,
                "artifact": art.path.name,
                "accuracy": acc,
                "drop_vs_native": None if reference_accuracy is None else reference_accuracy - acc,
            }
        )
    return rows


def render_markdown(rows: list[dict], reference: str = "native") -> str:
    lines = [
        f"| Calibration set ({STUDY_VARIANT}) | Samples | Accuracy | Drop vs {reference} |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        drop = "n/a" if r["drop_vs_native"] is None else f"{r['drop_vs_native']:+.4f}"
        lines.append(f"| {r['label']} | {r['samples']} | {r['accuracy']:.4f} | {drop} |")
    return "\n".join(lines) + "\n"
