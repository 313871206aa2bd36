"""Statistics a regression gate can stand on (groundwork for the gate; scipy does the arithmetic).

* :func:`mcnemar_worse` - exact one-sided McNemar test on paired per-image
  correctness: is the candidate significantly worse than the baseline?
* :func:`median_ci` - distribution-free confidence interval of a median
  from order statistics (no assumption about the latency distribution).
* :func:`ratio_of_medians_ci` - bootstrap interval of median(a) / median(b),
  for speed-ups and current/baseline ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class McNemar:
    worse: int  # images the baseline got right and the candidate wrong
    better: int  # images the candidate got right and the baseline wrong
    p_value: float  # one-sided: P(at least `worse` of the discordant pairs go against the candidate | no difference)


def mcnemar_worse(baseline_correct, candidate_correct) -> McNemar:
    """Exact McNemar on the discordant pairs, one-sided towards "the candidate is worse"."""
    from scipy.stats import binomtest

    base = np.asarray(baseline_correct, bool)
    cand = np.asarray(candidate_correct, bool)
    if base.shape != cand.shape:
        raise ValueError(f"paired results differ in length: {base.shape} vs {cand.shape}")
    worse = int(np.sum(base & ~cand))
    better = int(np.sum(~base & cand))
    n = worse + better
    p = 1.0 if n == 0 else float(binomtest(worse, n, 0.5, alternative="greater").pvalue)
    return McNemar(worse, better, p)


def median_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Order-statistic interval [x_(l), x_(u)] that covers the true median with at least ``confidence``."""
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, float))
    n = len(x)
    if n == 0:
        raise ValueError("no samples")
    alpha = 1.0 - confidence
    lo = int(binom.ppf(alpha / 2, n, 0.5))  # P(B < lo) <= alpha/2 for B ~ Binomial(n, 1/2)
    hi = int(n - lo)  # symmetric
    lo = max(lo - 1, 0)
    hi = min(hi, n - 1)
    return float(x[lo]), float(x[hi])


def ratio_of_medians_ci(a, b, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(a) / median(b) (independent samples)."""
    from scipy.stats import bootstrap

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    res = bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


SKETCH_POINTS = np.arange(100) + 0.5  # mid-percentiles: each stands for 1 % of a block, so pooled quantiles are unbiased


def block_sketches(blocks) -> np.ndarray:
    """Each block of per-call samples reduced to its 0.5th, 1.5th, ..., 99.5th percentiles, shape ``(blocks, 100)``.

    A block is one interleaved round of one variant (:mod:`qbench.measure.latency`);
    blocks, not calls, are the independent units on a machine whose slow
    phases last longer than a call.  A sketch stands in for the block's calls
    when a stored baseline is compared, so baselines stay small.
    """
    return np.vstack([np.percentile(np.asarray(b, float), SKETCH_POINTS) for b in blocks if len(b)])


def pooled_quantile(sketches: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    return np.percentile(sketches.reshape(*sketches.shape[:-2], -1), q, axis=axis)


def sketch_quantile_ci(sketches, q: float, confidence: float = 0.95, resamples: int = 2000, seed: int = 0):
    """Point estimate and block-bootstrap interval of the ``q``-th percentile: ``(point, low, high)``."""
    s = np.asarray(sketches, float)
    rng = np.random.default_rng(seed)
    boot = pooled_quantile(s[rng.integers(0, len(s), (resamples, len(s)))], q)
    tail = 50 * (1 - confidence)
    return float(pooled_quantile(s, q)), float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail))


def sketch_ratio_ci(
    numerator, denominator, q: float, paired: bool = False, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
):
    """``(point, low, high)`` of quantile(numerator) / quantile(denominator), block bootstrap.

    ``paired``: block ``i`` of both was measured in the same interleaved
    round (a same-run ratio), so they are resampled together and a slow phase
    of the machine cancels out; otherwise (current vs a stored baseline) the
    two are resampled independently.
    """
    a, b = np.asarray(numerator, float), np.asarray(denominator, float)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), (resamples, len(a)))
    if paired:
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        ia = ib = rng.integers(0, n, (resamples, n))
    else:
        ib = rng.integers(0, len(b), (resamples, len(b)))
    ratios = pooled_quantile(a[ia], q) / pooled_quantile(b[ib], q)
    tail = 50 * (1 - confidence)
    point = float(pooled_quantile(a, q) / pooled_quantile(b, q))
    return point, float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))
