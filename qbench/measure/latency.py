"""Latency samples: timed where the runtime lives, interleaved across variants, replayed into pytest-benchmark.

Every call is timed with ``perf_counter`` in the process that runs it (see
:mod:`qbench.measure.worker`), so no pipe or pickling is in the figures.  Rounds of
all variants are interleaved (round ``r`` starts at variant ``r mod n``), so
a slow phase of a shared machine hits every variant alike.  Each variant's
first round is a discarded warm-up, and so are the first calls of every
block (a fifth more calls are made and dropped): a runtime resumed after a
pause needs a few calls to wake its threads and caches (TensorFlow's first
five calls after a resume took 1.9, 1.7, 1.6, 1.5, 1.5 ms, then 1.4 ms).
Blocks are about 0.1 s: with 20 ms blocks the native median on the default
model read 23 % higher interleaved than alone (5.77 vs 4.70 ms), with 0.1 s
blocks 2 % (4.46 vs 4.54 ms); one run each, development VM, before native
ran without oneDNN.  pytest-benchmark still owns the statistics, storage and
``--benchmark-compare``: :func:`replay` feeds the samples to its fixture
through a clock that advances by each sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

Timer = Callable[[int], "list[float] | np.ndarray"]  # calls -> per-call seconds, (calls,) or (calls, len(PHASES))

# What one timed call is split into (columns of :func:`time_phases`):
# ``end_to_end``: float image in, float scores out (prepare + invoke + finish);
# ``invoke``: the runtime alone, input already in its dtype, raw output.
PHASES = ("end_to_end", "invoke")

# Calls per block at most: only the harness floor (about 1 us a call) reaches it, and
# 10,000 of its calls describe it as well as a full 0.1 s block would, in a tenth of the time.
MAX_BLOCK_CALLS = 10_000
WAKE_NEGLIGIBLE_S = 0.05  # a call this long needs no warm call before its block (interleaved_samples)


def time_calls(fn: Callable, arg, calls: int) -> np.ndarray:
    """Per-call seconds of ``calls`` back-to-back ``fn(arg)``."""
    out = np.empty(int(calls))
    clock = time.perf_counter
    for i in range(int(calls)):
        t0 = clock()
        fn(arg)
        out[i] = clock() - t0
    return out


def time_phases(runner, x, calls: int, stretch: float = 1.0) -> np.ndarray:
    """(calls, 2) seconds: each call's end-to-end time and, inside it, the runtime's invoke.

    One pass gives both, from the same calls: four clock reads around
    ``runner.prepare``, ``runner.invoke`` and ``runner.dequantize_output``
    (what ``Runner.predict`` chains).  ``stretch`` (an injected slowdown,
    :mod:`qbench.measure.inject`) slows each phase by the same factor.
    """
    prepare, invoke, finish = _stretched_phases(runner, stretch)
    out = np.empty((int(calls), len(PHASES)))
    clock = time.perf_counter
    for i in range(int(calls)):
        t0 = clock()
        prepared = prepare(x)
        t1 = clock()
        raw = invoke(prepared)
        t2 = clock()
        finish(raw)
        t3 = clock()
        out[i, 0] = t3 - t0
        out[i, 1] = t2 - t1
    return out


def _stretched_phases(runner, stretch: float) -> tuple:
    """``runner``'s prepare, invoke and dequantize_output (what ``Runner.predict`` chains), each slowed by
    ``stretch`` (an injected slowdown, :mod:`qbench.measure.inject`)."""
    from qbench.measure.inject import stretch_call

    return tuple(stretch_call(f, stretch) for f in (runner.prepare, runner.invoke, runner.dequantize_output))


def time_method(runner, method: str, x, calls: int, stretch: float = 1.0) -> np.ndarray:
    """Time ``calls`` calls: ``"phases"`` (:func:`time_phases`) or one runner method, e.g. ``keras_predict``."""
    from qbench.measure.inject import stretch_call

    if method == "phases":
        return time_phases(runner, x, calls, stretch)
    return time_calls(stretch_call(getattr(runner, method), stretch), x, calls)


def phase_blocks(blocks, phase: str) -> list[np.ndarray]:
    """One phase's column of :func:`time_phases` blocks."""
    col = PHASES.index(phase)
    return [b[:, col] for b in blocks]


def interleaved_samples(
    timers: dict[str, Timer],
    max_time: float,
    min_rounds: int = 5,
    block_seconds: float = 0.1,
    on_error: Callable[[str, Exception], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Per-call samples for every timer, as one block per interleaved round of about ``block_seconds``.

    Block ``i`` of every variant comes from round ``i``, so same-run ratios
    can pair them (:func:`qbench.core.stats.sketch_ratio_ci`).

    Each variant gets about ``max_time`` seconds of measurement (at least
    ``min_rounds`` rounds).  A timer that raises is dropped (``on_error``)
    and the others go on.
    """
    live = dict(timers)
    calls: dict[str, int] = {}
    samples: dict[str, list[np.ndarray]] = {name: [] for name in timers}

    per_call: dict[str, float] = {}

    def run(name: str, n: int) -> np.ndarray | None:
        try:
            # a runtime resumed after a pause needs a few calls to wake its threads and caches; a call of 50 ms or
            # more dwarfs that (under 2 %), and an unneeded warm call of it doubled the block (int16x8 at batch 32)
            warm = 0 if per_call.get(name, 0.0) >= WAKE_NEGLIGIBLE_S else max(1, n // 5)
            return np.asarray(live[name](n + warm), dtype=float)[warm:]
        except Exception as exc:
            live.pop(name, None)
            if on_error is None:
                raise
            on_error(name, exc)
            return None

    for name in list(live):  # warm-up round, discarded; it also sizes the blocks
        warm = run(name, 3)
        if warm is not None:
            per_call[name] = float(np.median(warm if warm.ndim == 1 else warm[:, 0]))
            calls[name] = max(1, min(MAX_BLOCK_CALLS, int(block_seconds / max(per_call[name], 1e-7))))
    rounds = max(int(min_rounds), math.ceil(max_time / block_seconds))
    names = list(live)
    t0 = time.perf_counter()
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            if name in live:
                got = run(name, calls[name])
                if got is not None:
                    samples[name].append(got)
        if progress is not None and (r + 1) % max(1, rounds // 4) == 0 and r + 1 < rounds:
            progress(f"latency: round {r + 1}/{rounds} of {len(live)} interleaved variants ({time.perf_counter() - t0:.0f}s)")
    return {name: parts for name, parts in samples.items() if parts and name in live}


def latency_figures(blocks) -> dict:
    """Percentiles (seconds), the median's block-bootstrap 95 % interval, and the block sketch."""
    from qbench.core.stats import block_sketches, sketch_quantile_ci

    samples = np.concatenate(blocks)
    sketch = block_sketches(blocks)
    p10, p50, p90, p99 = np.percentile(samples, [10, 50, 90, 99])
    _, low, high = sketch_quantile_ci(sketch, 50)
    return {"p10": p10, "p50": p50, "p90": p90, "p99": p99, "median_ci_low": low, "median_ci_high": high, "sketch": sketch}


class ReplayClock:
    """A clock for pytest-benchmark that advances by one stored sample per call of :meth:`advance`."""

    __name__ = "qbench.worker_perf_counter"

    def __init__(self, samples):
        self.samples = [float(s) for s in samples]
        self.now = 0.0
        self.index = 0

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += self.samples[self.index]
        self.index += 1


def replay(benchmark, samples) -> None:
    """Hand ``samples`` (seconds per call) to a pytest-benchmark fixture as its rounds.

    Uses the fixture's timer attribute (``_timer``), the one piece of
    pytest-benchmark that is not public API; its statistics, grouping,
    storage and comparison are used unchanged.
    """
    clock = ReplayClock(samples)
    benchmark._timer = clock
    benchmark.pedantic(clock.advance, rounds=len(clock.samples), iterations=1, warmup_rounds=0)
