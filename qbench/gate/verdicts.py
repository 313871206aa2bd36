"""The regression gate: each verdict with the numbers behind it, in one line.

Accuracy: a variant regresses when, against its stored per-image predictions
(:mod:`qbench.gate.stored`), it is significantly worse (exact one-sided
McNemar on the discordant images, ``alpha``) *and* it lost more than
``margin`` of the test split.  The absolute floor stays a separate check.

With a same-job base (``--qbench-base REF`` or ``--qbench-base-model``,
:mod:`qbench.gate.base`) both checks pair the candidate with its base twin
measured in this run: McNemar on the images where the two disagree, and the
paired interval of candidate/base over the same interleaved rounds.

Latency: a variant regresses when the 95 % interval of current/baseline lies
wholly above ``threshold``.  The baseline is the same-job base, else this
machine's own stored run (:mod:`qbench.gate.fingerprint`: the same kind of CPU,
cores and versions), read from pytest-benchmark's storage.  Without either,
latency is not gated, and the verdict line says so: ratios between variants
do not carry across machines (native / tflite-fp32 was 24.5x on an AVX2-only
VM and 10.5x on an AVX-512 VNNI one), so they are no gate.
The gated figure is the 10th percentile of the per-call latency: a real
slowdown moves every percentile, while the shared VM's slow phases (another
tenant on the second vCPU) mostly fatten the upper half, and moved the median
of tflite-int8 by up to 1.71x and its p10 by 1.11x between unmodified runs (20 runs, development VM).
Intervals come from a block bootstrap over the interleaved rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qbench.core.errors import QBenchError
from qbench.core.stats import mcnemar_worse, sketch_quantile_ci, sketch_ratio_ci
from qbench.measure.inject import Injections, parse_assignments

GATE_QUANTILE = 10

# pytest options: (name, type, default, help); "append" options may repeat.
GATE_OPTIONS = [
    ("accuracy-alpha", float, 0.01, "significance level of the McNemar accuracy gate (default 0.01)"),
    ("accuracy-margin", float, 0.005, "accuracy loss vs the stored predictions tolerated even if significant (default 0.005)"),
    (
        "portable-save",
        bool,
        False,
        "after a passing run, store per-image predictions and same-run latency ratios (portable baseline)",
    ),
    ("latency-threshold", float, 1.2, "latency regression threshold: current/baseline interval wholly above it (default 1.2)"),
    (
        "baseline-max-spread",
        float,
        1.15,
        "a run whose p10 95 % interval is wider than this (high/low) is not stored as a baseline",
    ),
    ("baseline-dir", str, "baselines", "where the accuracy baselines live (latency: --benchmark-storage)"),
    (
        "base",
        str,
        None,
        "REF: build this git revision's model and variants with its own code and gate every variant against its "
        "twin measured in the same job, interleaved (e.g. origin/main, HEAD~1)",
    ),
    ("base-model", str, None, "PATH: a second model file as the same-job base (two models compared without git)"),
    (
        "memory-threshold",
        float,
        1.1,
        "peak-memory regression threshold: current/baseline peak above it, and at least 1 MiB more (default 1.1)",
    ),
    ("inject-memory", "append", None, "VARIANT=MIB: make the variant's workers hold MIB more from load on (gate self-check)"),
    ("inject-slowdown", "append", None, "VARIANT=FACTOR: make the variant's timed calls FACTOR times slower (gate self-check)"),
    ("inject-error", "append", None, "VARIANT=FRACTION: make that fraction of its correct predictions wrong (gate self-check)"),
]


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.01
    margin: float = 0.005
    threshold: float = 1.2
    confidence: float = 0.95
    save_portable: bool = False
    baseline_max_spread: float = 1.15
    baseline_dir: Path = Path("baselines")
    injections: Injections = field(default_factory=Injections)
    base: str | None = None
    base_model: str | None = None
    memory_threshold: float = 1.1


def gate_settings(get, variants: tuple[str, ...], seed: int = 0) -> GateSettings:
    """From an option getter keyed by :data:`GATE_OPTIONS` names; every mistake one sentence."""
    alpha, margin, threshold = get("accuracy-alpha"), get("accuracy-margin"), get("latency-threshold")
    if not 0.0 < alpha < 1.0:
        raise QBenchError(f"--qbench-accuracy-alpha must be between 0 and 1, got {alpha}")
    if not 0.0 <= margin < 1.0:
        raise QBenchError(f"--qbench-accuracy-margin must be in [0, 1), got {margin}")
    if not threshold > 1.0:
        raise QBenchError(f"--qbench-latency-threshold must be above 1, got {threshold}")
    injections = Injections(
        slowdown=parse_assignments(get("inject-slowdown"), "--qbench-inject-slowdown", 1.0, 100.0, variants),
        error=parse_assignments(get("inject-error"), "--qbench-inject-error", 0.0, 1.0, variants),
        memory=parse_assignments(get("inject-memory"), "--qbench-inject-memory", 0.0, 65536.0, variants),
        seed=seed,
    )
    memory_threshold = get("memory-threshold")
    if memory_threshold is None:
        memory_threshold = 1.1
    if not memory_threshold > 1.0:
        raise QBenchError(f"--qbench-memory-threshold must be above 1, got {memory_threshold}")
    spread = get("baseline-max-spread")
    if not spread > 1.0:
        raise QBenchError(f"--qbench-baseline-max-spread must be above 1, got {spread}")
    return GateSettings(
        alpha,
        margin,
        threshold,
        0.95,
        bool(get("portable-save")),
        spread,
        Path(get("baseline-dir")),
        injections,
        get("base") or None,
        get("base-model") or None,
        float(memory_threshold),
    )


@dataclass(frozen=True)
class Verdict:
    variant: str
    check: str  # "accuracy" or "latency"
    ok: bool
    line: str
    figures: dict = field(default_factory=dict)
    against: str = ""  # "stored predictions", "stored run for this machine" or a same-job base's mode


STORED_PREDICTIONS = "stored predictions"
STORED_RUN = "stored run for this machine"


def accuracy_verdict(
    variant: str, y_true, baseline_pred, pred, alpha: float, margin: float, against: str = STORED_PREDICTIONS, label: str = ""
) -> Verdict:
    """``label``: how the line names the baseline (default: its stored predictions)."""
    y, base, cur = np.asarray(y_true), np.asarray(baseline_pred), np.asarray(pred)
    if base.shape != y.shape:
        raise QBenchError(f"{variant}: the accuracy baseline has {len(base)} predictions, the test split {len(y)} images")
    m = mcnemar_worse(base == y, cur == y)
    loss = (m.worse - m.better) / len(y)
    bad = m.p_value < alpha and loss > margin
    figures = {
        "worse": m.worse,
        "better": m.better,
        "p_value": m.p_value,
        "loss": loss,
        "images": len(y),
        "accuracy": float(np.mean(cur == y)),
    }
    why = (
        f"{m.worse} images newly wrong, {m.better} newly right of {len(y)}; loss {loss * 100:+.2f} pp "
        f"(margin {margin * 100:.2f} pp), McNemar p={m.p_value:.2g} (alpha {alpha:g})"
    )
    label = label or "its stored predictions"
    if bad:
        return Verdict(variant, "accuracy", False, f"{variant}: accuracy regressed vs {label}: {why}", figures, against)
    return Verdict(variant, "accuracy", True, f"{variant}: accuracy as {label}: {why}", figures, against)


def _judge_ratio(variant: str, what: str, low: float, threshold: float, figures: dict, against: str) -> Verdict:
    """The latency rule, for any ratio: a regression only when the whole interval lies above ``threshold``."""
    if low > threshold:
        return Verdict(variant, "latency", False, f"{variant}: slower: {what}, wholly above {threshold:g}x", figures, against)
    return Verdict(variant, "latency", True, f"{variant}: {what}, not wholly above {threshold:g}x", figures, against)


def latency_verdict(variant: str, current, baseline, threshold: float, confidence: float = 0.95) -> Verdict:
    """Against this machine's stored run; ``current``/``baseline``: block sketches (:func:`qbench.core.stats.block_sketches`)."""
    point, lo, hi = sketch_ratio_ci(current, baseline, GATE_QUANTILE, paired=False, confidence=confidence)
    figures = {"ratio": point, "low": lo, "high": hi, "threshold": threshold}
    what = f"p{GATE_QUANTILE} latency {point:.3f}x its baseline ({confidence:.0%} CI {lo:.3f}-{hi:.3f}x)"
    return _judge_ratio(variant, what, lo, threshold, figures, STORED_RUN)


def base_latency_verdict(
    variant: str, current, base, label: str, mode: str, threshold: float, confidence: float = 0.95
) -> Verdict:
    """Against the base twin of the same campaign: block ``i`` of both came from round ``i``, so they are paired."""
    point, lo, hi = sketch_ratio_ci(current, base, GATE_QUANTILE, paired=True, confidence=confidence)
    from qbench.core.stats import pooled_quantile

    figures = {
        "ratio": point,
        "low": lo,
        "high": hi,
        "threshold": threshold,
        "candidate_p10_ms": float(pooled_quantile(current, GATE_QUANTILE)) * 1e3,
        "base_p10_ms": float(pooled_quantile(base, GATE_QUANTILE)) * 1e3,
    }
    what = f"p{GATE_QUANTILE} latency {point:.3f}x {label} in the same job ({confidence:.0%} CI {lo:.3f}-{hi:.3f}x)"
    return _judge_ratio(variant, what, lo, threshold, figures, mode)


MEMORY_SLACK_MIB = 1.0  # below this, a difference in resident memory is page-level jitter, never a regression


def _peak(costs: dict) -> tuple[float, float, float]:
    """Median, lowest and highest peak (MiB) of a costs summary (:func:`qbench.measure.costs.summarize`)."""
    low, high = costs.get("peak_mib_range") or (costs["peak_mib"], costs["peak_mib"])
    return float(costs["peak_mib"]), float(low), float(high)


def memory_verdict(variant: str, current: dict, baseline: dict, threshold: float, against: str, label: str) -> Verdict:
    """Peak resident memory (:mod:`qbench.measure.costs`) against ``label``'s.

    A regression is the candidate's *lowest* sample above ``threshold`` times the baseline's *highest* and at
    least :data:`MEMORY_SLACK_MIB` more: native's peak spread over 40.3-46.1 MiB in five fresh workers of
    the smoke model, so medians alone would cry wolf; with one sample each it is the plain comparison.
    """
    cur, cur_low, _ = _peak(current)
    base, _, base_high = _peak(baseline)
    ratio = cur / base if base > 0 else float("inf")
    figures = {"peak_mib": cur, "baseline_peak_mib": base, "ratio": ratio, "threshold": threshold}
    figures |= {"peak_mib_low": cur_low, "baseline_peak_mib_high": base_high}
    ok = not (cur_low > threshold * base_high and cur_low - base_high >= MEMORY_SLACK_MIB)
    what = f"peak memory {cur:.1f} MiB, {ratio:.2f}x {label}'s {base:.1f} MiB"
    if ok:
        return Verdict(variant, "memory", True, f"{variant}: {what}, not above {threshold:g}x", figures, against)
    return Verdict(variant, "memory", False, f"{variant}: more memory: {what}, above {threshold:g}x", figures, against)


def stored_extra(benchmark_session, fullname: str, key: str):
    """``extra_info[key]`` of ``fullname`` in the run ``--benchmark-compare`` loaded, with its file; or ``None``."""
    for path, mapping in (getattr(benchmark_session, "compared_mapping", None) or {}).items():
        value = ((mapping.get(fullname) or {}).get("extra_info") or {}).get(key)
        if value is not None:
            return value, str(path)
    return None


def confirmed(verdict_of_campaign) -> Verdict:
    """A latency regression must show in two of (at most) three independent campaigns.

    The shared VM has whole-run slow phases: in about 1 of 20 unmodified runs
    every LiteRT variant ran 2.3x slower for a whole campaign (the 2-thread
    kernels serialized) and the next campaign was normal again.  A real
    slowdown shows in most campaigns; such a phase rarely spans two of them.
    A second campaign is run only when the first fails, a third only when the
    first two disagree.
    """
    first = verdict_of_campaign(0)
    if first.ok:
        return first
    second = verdict_of_campaign(1)
    runs = [first, second]
    if second.ok:
        runs.append(verdict_of_campaign(2))
    failed = [v for v in runs if not v.ok]
    ratios = ", ".join(f"{v.figures['ratio']:.3f}x" for v in runs)
    figures = {**runs[-1].figures, "first": first.figures, "campaigns": [v.figures for v in runs]}
    last = runs[-1]
    if len(failed) >= 2:
        worst = failed[-1]
        return Verdict(
            worst.variant,
            worst.check,
            False,
            f"{worst.line} (in {len(failed)} of {len(runs)} campaigns: {ratios})",
            figures,
            worst.against,
        )
    why = first.line.split(": ", 1)[1]
    return Verdict(
        first.variant,
        first.check,
        True,
        f"{first.variant}: not confirmed (1 of {len(runs)} campaigns: {ratios}): first campaign {why}; "
        f"re-measured: {last.line.split(': ', 1)[1]}",
        figures,
        first.against,
    )


def noisy_campaign(sketches: dict, max_spread: float = 1.15, confidence: float = 0.95) -> list[str]:
    """Variants whose p10 interval is wider than ``max_spread`` (high/low): such a run must not become a baseline."""
    out = []
    for name, sketch in sketches.items():
        _, lo, hi = sketch_quantile_ci(sketch, GATE_QUANTILE, confidence)
        if hi > max_spread * lo:
            out.append(f"{name} p{GATE_QUANTILE} {lo * 1e3:.3f}-{hi * 1e3:.3f} ms")
    return out


def stored_sketch(benchmark_session, fullname: str):
    """The block sketch of ``fullname`` in the run ``--benchmark-compare`` loaded, with its file; or ``None``."""
    for path, mapping in (getattr(benchmark_session, "compared_mapping", None) or {}).items():
        bench = mapping.get(fullname)
        sketch = (bench or {}).get("extra_info", {}).get("qbench_sketch_us")
        if sketch:
            return np.asarray(sketch, float) * 1e-6, str(path)
    return None
