"""The gate's statistics against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qbench.core.stats import mcnemar_worse, median_ci, ratio_of_medians_ci


def _paired(worse: int, better: int, both_right: int = 50, both_wrong: int = 5):
    base = [True] * worse + [False] * better + [True] * both_right + [False] * both_wrong
    cand = [False] * worse + [True] * better + [True] * both_right + [False] * both_wrong
    return base, cand


def test_mcnemar_matches_the_binomial_tail_by_hand():
    # 10 discordant against the candidate, 2 for it: P(X >= 10 | n = 12, 1/2) = (66 + 12 + 1) / 4096
    r = mcnemar_worse(*_paired(10, 2))
    assert (r.worse, r.better) == (10, 2)
    assert r.p_value == pytest.approx(79 / 4096, rel=1e-12)


def test_mcnemar_ignores_concordant_pairs_and_is_one_sided():
    assert mcnemar_worse(*_paired(3, 3, both_right=10)).p_value == mcnemar_worse(*_paired(3, 3, both_right=900)).p_value
    assert mcnemar_worse(*_paired(0, 9)).p_value == 1.0  # the candidate is better: no evidence it is worse
    assert mcnemar_worse(*_paired(0, 0)).p_value == 1.0
    assert mcnemar_worse(*_paired(8, 0)).p_value == pytest.approx(2.0**-8)


def test_mcnemar_rejects_unpaired_input():
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_worse([True, False], [True])


def test_median_ci_covers_a_known_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_median = math.log(2.0)  # exponential(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        lo, hi = median_ci(rng.exponential(1.0, size=61))
        hits += lo <= true_median <= hi
    assert 0.93 <= hits / trials <= 0.995, hits / trials


def test_median_ci_narrows_with_more_samples():
    rng = np.random.default_rng(2)
    lo1, hi1 = median_ci(rng.normal(size=50))
    lo2, hi2 = median_ci(rng.normal(size=5000))
    assert hi2 - lo2 < (hi1 - lo1) / 4


def test_ratio_ci_brackets_a_known_ratio_and_excludes_one_for_a_real_slowdown():
    rng = np.random.default_rng(3)
    base = rng.lognormal(0.0, 0.1, size=400)
    slow = 1.3 * rng.lognormal(0.0, 0.1, size=400)
    lo, hi = ratio_of_medians_ci(slow, base, resamples=1000)
    assert lo <= 1.3 <= hi and lo > 1.2
    lo, hi = ratio_of_medians_ci(rng.lognormal(0.0, 0.1, size=400), base, resamples=1000)
    assert lo <= 1.0 <= hi
