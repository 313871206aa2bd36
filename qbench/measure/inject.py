"""Deliberate regressions, so the gate can be shown to catch what it claims to catch.

``--qbench-inject-slowdown VARIANT=FACTOR``: every timed call of the variant
waits (busy, in its worker, inside the timed region) until it has taken
FACTOR times as long as the call itself.

``--qbench-inject-error VARIANT=FRACTION``: that fraction of the variant's
correct test predictions (chosen by seed) become a wrong class; the scores
stay a probability vector (the true class's score is swapped with the next
class's).

``--qbench-inject-memory VARIANT=MIB``: the variant's workers hold MIB more
resident memory (written, so resident) from load on, so its load and peak
memory read MIB higher (:mod:`qbench.measure.costs`).

``qbench gatecheck`` uses the first two to measure the gate's false-alarm
and detection rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qbench.core.errors import QBenchError


@dataclass(frozen=True)
class Injections:
    slowdown: dict[str, float] = field(default_factory=dict)  # variant -> factor >= 1
    error: dict[str, float] = field(default_factory=dict)  # variant -> fraction of correct predictions in [0, 1]
    memory: dict[str, float] = field(default_factory=dict)  # variant -> MiB held from load on
    seed: int = 0

    def __bool__(self) -> bool:
        return bool(self.slowdown or self.error or self.memory)


def parse_assignments(items, option: str, low: float, high: float, known: tuple[str, ...]) -> dict[str, float]:
    """``["tflite-int8=1.3", ...]`` -> ``{"tflite-int8": 1.3}``, every mistake one sentence."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name:
            raise QBenchError(f"{option} takes VARIANT=NUMBER, got {item!r}")
        if name not in known:
            raise QBenchError(f"{option}: unknown variant {name!r}; choose from {', '.join(known)}")
        try:
            number = float(value)
        except ValueError:
            raise QBenchError(f"{option} {name}: {value!r} is not a number") from None
        if not low <= number <= high:
            raise QBenchError(f"{option} {name}: {number:g} is outside [{low:g}, {high:g}]")
        out[name] = number
    return out


def stretch_call(fn, factor: float, clock=None):
    """``fn`` made ``factor`` times slower by busy-waiting after each call (exact at any call length).

    ``clock`` defaults to ``time.perf_counter`` (a test passes a fake one).
    """
    if factor == 1.0:
        return fn
    import time

    clock = clock or time.perf_counter

    def slowed(*args):
        t0 = clock()
        result = fn(*args)
        until = t0 + factor * (clock() - t0)
        while clock() < until:
            pass
        return result

    return slowed


def corrupt_predictions(scores: np.ndarray, y_true: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Turn ``round(fraction * correct)`` correct predictions wrong; return new scores."""
    scores = np.array(scores, copy=True)
    correct = np.flatnonzero(np.argmax(scores, axis=1) == y_true)
    n = int(round(fraction * len(correct)))
    if n == 0:
        return scores
    pick = np.random.default_rng(seed).choice(correct, size=n, replace=False)
    classes = scores.shape[1]
    for i in pick:
        true, other = y_true[i], (y_true[i] + 1) % classes
        scores[i, true], scores[i, other] = scores[i, other], scores[i, true]
    return scores
