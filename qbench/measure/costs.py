"""What a variant costs beyond one warm call: load time, first call, resident memory, over fresh workers.

TFLite's ``benchmark_model`` reports initialization time, the first
inference and the peak memory footprint beside the steady average; for
int8 the memory saving is often the reason to quantize.  Each sample is
one fresh worker process (:mod:`qbench.measure.isolation`), measured in
that worker:

* **baseline**: the worker's resident set (``VmRSS``) after importing the
  variant's runtime (``Variant.runtime_modules``), before its artifact:
  what a worker that loaded nothing holds, Python and imports included;
* **load**: seconds from the artifact on disk to a ready runner, and the
  resident set it adds over the baseline;
* **first call**: the first single-image inference after load, alone;
* **peak**: what loading left resident plus what running the test split
  adds on top of it at its peak (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``, less the resident set just before the run, so
  the test images the harness holds are not counted).

The variant's own worker (the one accuracy and latency use) is the first
sample; ``--qbench-cost-samples`` sets how many in all.  Memory is the
whole process's resident pages (heap, the runtime's arenas and thread
stacks, touched pages of the mapped model file and libraries), so
shared-library pages the baseline had not touched count as the variant's.
"""

from __future__ import annotations

import statistics

MIB = 1024.0  # KiB per MiB


def sample(runner_costs: dict, run: dict) -> dict:
    """One worker's figures from what :func:`qbench.measure.isolation.start_remote_runner` measured at load
    and ``run`` (the resident set before the test split and the peak during it, KiB)."""
    base, load = runner_costs["baseline"]["rss_kib"], runner_costs["load"]
    load_mib = (load["rss_kib"] - base) / MIB if base is not None and load["rss_kib"] is not None else None
    peak_mib = None
    if load_mib is not None and run.get("peak_kib") is not None and run.get("rss_kib") is not None:
        peak_mib = load_mib + max(0, run["peak_kib"] - run["rss_kib"]) / MIB
    return {
        "import_s": runner_costs["baseline"]["import_s"],
        "load_s": load["load_s"],
        "first_call_s": runner_costs["first_call_s"],
        "load_mib": load_mib,
        "peak_mib": peak_mib,
    }


def measure(runner) -> tuple:
    """The test split's scores and one costs sample from a runner started with ``costs=True``: its first call,
    then the test split with the resident peak (call it first thing after the start, inside the caller's step)."""
    runner.costs["first_call_s"] = runner.first_call()
    scores, run = runner.evaluate_peak()
    return scores, sample(runner.costs, run)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarize(samples: list[dict]) -> dict:
    """Median and range of each figure over the samples (ms and MiB), and how many samples."""
    out: dict = {"cost_samples": len(samples)}
    for key, scale, unit in (
        ("load_s", 1e3, "load_ms"),
        ("first_call_s", 1e3, "first_call_ms"),
        ("load_mib", 1.0, "load_mib"),
        ("peak_mib", 1.0, "peak_mib"),
    ):
        values = [s[key] * scale for s in samples if s.get(key) is not None]
        if values:
            med, low, high = _spread(values)
            out[unit], out[f"{unit}_range"] = med, [low, high]
    return out
