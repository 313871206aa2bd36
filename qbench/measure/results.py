"""What one variant's measurements come to: its evaluation on the test split and its row of the summary.

Records only: the session fills them (:mod:`qbench.session`), the report reads them (:mod:`qbench.report.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Evaluation:
    variant: str
    y_true: np.ndarray
    scores: np.ndarray
    metrics: dict
    seconds: float

    @property
    def y_pred(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


@dataclass
class VariantResult:
    variant: str
    accuracy: float | None = None
    metrics: dict = field(default_factory=dict)
    size_bytes: int | None = None
    latency: dict | None = None  # seconds: mean, median, min, stddev, rounds
    failure: str | None = None  # "crashed during accuracy (SIGABRT, signal 6)" and the like
    costs: dict | None = None  # load time, first call, memory (qbench.measure.costs.summarize)
    throughput: dict | None = None  # images per second by batch and streams (qbench.measure.throughput.summarize)
