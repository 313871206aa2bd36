"""The summary table: speed boost, accuracy and size reduction per variant."""

from __future__ import annotations

import math
from pathlib import Path

from qbench import backends
from qbench.core.fsutil import atomic_write_json, atomic_write_text
from qbench.core.stats import sketch_ratio_ci
from qbench.report.throughput_table import THROUGHPUT_NOTE, render_throughput


def summarize(results: dict, baseline: str | None = None) -> list[dict]:
    """Rows in canonical variant order with ratios against ``baseline``.

    ``speed_boost`` = baseline median latency / variant median latency (the
    median shrugs off the scheduler hiccups of a shared 2-core machine);
    ``size_reduction`` = baseline file size / variant file size.
    Ratios are ``None`` when either side was not measured in this run.
    ``baseline`` defaults to the registry's reference variant (``native``).
    """
    baseline = baseline or backends.reference_name()
    base = results.get(baseline)
    base_lat = (base.latency or {}).get("median") if base else None
    base_size = base.size_bytes if base else None
    rows = []
    known = backends.names()
    order = [v for v in known if v in results] + [v for v in results if v not in known]
    base_sketch = (base.latency or {}).get("sketch") if base else None
    isa = kernel_isas(order)
    base_invoke = ((base.latency or {}).get("invoke") or {}) if base else {}
    for name in order:
        r = results[name]
        lat = (r.latency or {}).get("median")
        mean = (r.latency or {}).get("mean")
        lat_ms = {
            k: v * 1e3 for k, v in (r.latency or {}).items() if k in ("p50", "p90", "p99", "median_ci_low", "median_ci_high")
        }
        boost_ci = (None, None)
        sketch = (r.latency or {}).get("sketch")
        if sketch is not None and base_sketch is not None and name != baseline:
            # same rounds, paired: the machine's slow phases cancel out of the ratio
            _, low, high = sketch_ratio_ci(base_sketch, sketch, 50, paired=True)
            boost_ci = (low, high)
        invoke = (r.latency or {}).get("invoke") or {}
        inv_ms = {f"invoke_{k}_ms": v * 1e3 for k, v in invoke.items() if k != "sketch"}
        inv_boost_ci = None
        if invoke.get("sketch") is not None and base_invoke.get("sketch") is not None and name != baseline:
            _, low, high = sketch_ratio_ci(base_invoke["sketch"], invoke["sketch"], 50, paired=True)
            inv_boost_ci = (low, high)
        rows.append(
            {
                "variant": name,
                "speed_boost": base_lat / lat if base_lat and lat else None,
                "speed_boost_ci": boost_ci if boost_ci[0] is not None else None,
                **{f"{k}_ms": v for k, v in lat_ms.items()},
                "accuracy": r.accuracy,
                "size_reduction": base_size / r.size_bytes if base_size and r.size_bytes else None,
                "median_latency_ms": lat * 1e3 if lat else None,
                "end_to_end_median_ms": lat * 1e3 if lat else None,
                **{f"end_to_end_{k}": v for k, v in lat_ms.items()},
                "invoke_median_ms": inv_ms.get("invoke_p50_ms"),
                **inv_ms,
                "invoke_speed_boost": base_invoke["p50"] / invoke["p50"]
                if invoke.get("p50") and base_invoke.get("p50")
                else None,
                "invoke_speed_boost_ci": inv_boost_ci,
                "mean_latency_ms": mean * 1e3 if mean else None,
                "rounds": (r.latency or {}).get("rounds"),
                "size_bytes": r.size_bytes,
                **(r.costs or {}),
                "throughput": r.throughput,
                "throughput_img_s": (r.throughput or {}).get("best_img_s"),
                "throughput_best": (r.throughput or {}).get("best"),
                "throughput_b1_x_median": _b1_x_median(r),
                "kernel_isa": isa.get(name),
                "g_mean": r.metrics.get("g_mean") if r.metrics else None,
                "precision": r.metrics.get("precision") if r.metrics else None,
                "recall": r.metrics.get("recall") if r.metrics else None,
                "f1": r.metrics.get("f1") if r.metrics else None,
                "confusion_matrix": r.metrics.get("confusion_matrix") if r.metrics else None,
                "status": "ok" if not getattr(r, "failure", None) else f"FAILED: {r.failure}",
            }
        )
    return rows


def kernel_isas(names) -> dict[str, str]:
    """Each registered variant's kernels' widest instruction set on this machine (:mod:`qbench.backends.kernels`)."""
    from qbench.backends.kernels import machine_flags

    flags, out = machine_flags(), {}
    for name in names:
        rule = backends.get(name).kernel_isa if name in backends.names() else None
        if rule is not None:
            out[name] = rule(flags)
    return out


def _b1_x_median(r) -> float | None:
    """Batch-1 images per second x the median latency: 1 where a block's calls have no heavy tail."""
    one = ((r.throughput or {}).get("batches") or {}).get("1")
    median = (r.latency or {}).get("median")
    return one["img_s"] * median if isinstance(one, dict) and median else None


def format_value(value, spec: str) -> str:
    """A table cell: ``n/a`` for a missing or NaN value (the Markdown and HTML tables share it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def format_interval(row: dict, key: str, spec: str) -> str:
    """`` (low-high)`` of a row's 95 % interval (``median``: the median's; else a ``[low, high]`` field), or ``""``."""
    lo, hi = (row.get(f"{key}_ci_low_ms"), row.get(f"{key}_ci_high_ms")) if key == "median" else (row.get(key) or (None, None))
    return "" if lo is None else f" ({format(lo, spec)}-{format(hi, spec)})"


def format_best_throughput(row: dict) -> str:
    """The best of a row's throughputs with how it was reached, ``3120 (batch 32)`` (or ``n/a``)."""
    best = row.get("throughput_img_s")
    return "n/a" if best is None else f"{best:.0f} ({row['throughput_best']})"


def format_base_ratio(comparison: dict) -> str:
    """A same-job comparison's candidate/base ratio with its 95 % interval, ``1.323 (1.304-1.336)`` (or ``n/a``)."""
    low, high = comparison.get("ratio_ci") or (None, None)
    return format_value(comparison.get("ratio"), ".3f") + ("" if low is None else f" ({low:.3f}-{high:.3f})")


def render_markdown(rows: list[dict]) -> str:
    header = [
        "Variant",
        "Speed boost e2e (95% CI)",
        "Speed boost invoke (95% CI)",
        "Accuracy",
        "Size reduction",
        "End-to-end median [ms] (95% CI)",
        "Invoke median [ms]",
        "p90 [ms]",
        "p99 [ms]",
        "Throughput [img/s]",
        "Size [KiB]",
        "G-mean",
        "Kernels (ISA here)",
        "Status",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---------------"] + ["------------:"] * (len(header) - 2) + ["------"]) + "|",
    ]
    for r in rows:
        cells = [
            r["variant"],
            format_value(r["speed_boost"], ".2f") + format_interval(r, "speed_boost_ci", ".3g"),
            format_value(r.get("invoke_speed_boost"), ".2f") + format_interval(r, "invoke_speed_boost_ci", ".3g"),
            format_value(r["accuracy"], ".4f"),
            format_value(r["size_reduction"], ".2f"),
            format_value(r["median_latency_ms"], ".3f") + format_interval(r, "median", ".3f"),
            format_value(r.get("invoke_median_ms"), ".3f"),
            format_value(r.get("p90_ms"), ".3f"),
            format_value(r.get("p99_ms"), ".3f"),
            format_best_throughput(r),
            format_value(r["size_bytes"] / 1024 if r["size_bytes"] else None, ".0f"),
            format_value(r["g_mean"], ".4f"),
            r.get("kernel_isa") or "n/a",
            r.get("status", "ok"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _with_range(row: dict, key: str, fmt: str) -> str:
    value, span = row.get(key), row.get(f"{key}_range")
    if value is None:
        return "n/a"
    if not span or row.get("cost_samples", 1) < 2:
        return format(value, fmt)
    return f"{format(value, fmt)} ({format(span[0], fmt)}-{format(span[1], fmt)})"


def costs_cells(rows: list[dict], against: str = "tflite-fp32") -> tuple[list[str], list[list[str]]]:
    """Header and cells of the costs table (:mod:`qbench.measure.costs`), for Markdown and HTML alike."""
    measured = [r for r in rows if r.get("cost_samples")]
    ref = next((r.get("peak_mib") for r in measured if r["variant"] == against), None)
    header = ["Variant", "Load [ms]", "First call [ms]", "Load memory [MiB]", "Peak memory [MiB]"]
    header += [f"Peak vs {against}", "Size [KiB]", "Workers"]
    body = []
    for r in measured:
        ratio = r["peak_mib"] / ref if ref and r.get("peak_mib") is not None else None
        body.append(
            [
                r["variant"],
                _with_range(r, "load_ms", ".1f"),
                _with_range(r, "first_call_ms", ".2f"),
                _with_range(r, "load_mib", ".1f"),
                _with_range(r, "peak_mib", ".1f"),
                format_value(ratio, ".2f") + ("x" if ratio is not None else ""),
                format_value(r["size_bytes"] / 1024 if r.get("size_bytes") else None, ".0f"),
                str(r["cost_samples"]),
            ]
        )
    return header, body


def render_costs(rows: list[dict], against: str = "tflite-fp32") -> str:
    """The second table: load time, first call and resident memory; empty if nothing was measured."""
    header, body = costs_cells(rows, against)
    if not body:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)]) + "\n"


COSTS_NOTE = (
    "Costs: medians (range) over fresh worker processes, one per sample. Load: artifact on disk to a ready runner, "
    "after the runtime's own imports; first call: the first single-image inference after load; memory: resident set "
    "(VmRSS, and VmHWM reset through /proc/self/clear_refs for the peak over the test split) above the same worker "
    "after importing the runtime and before loading the artifact."
)


def harness_floor_figures(samples) -> dict | None:
    """Median and p90 (ms) of the identity runner's end-to-end calls, or ``None``."""
    if samples is None or len(samples) == 0:
        return None
    import numpy as np

    p50, p90 = np.percentile(samples, [50, 90])
    return {"median_ms": float(p50 * 1e3), "p90_ms": float(p90 * 1e3), "calls": int(len(samples))}


def harness_floor_note(floor: dict | None) -> str | None:
    if not floor:
        return None
    return (
        f"Harness floor: an identity runner timed by the same path takes {floor['median_ms'] * 1e3:.1f} us "
        f"(median, p90 {floor['p90_ms'] * 1e3:.1f} us, {floor['calls']} calls); every end-to-end latency above includes it."
    )


def render_confusion(matrix: list[list[int]], class_names: list[str] | None = None) -> str:
    """Markdown confusion matrix: rows are true classes, columns predicted ones."""
    n = len(matrix)
    names = list(class_names) if class_names and len(class_names) == n else [str(i) for i in range(n)]
    lines = [
        "| true \\ predicted | " + " | ".join(names) + " |",
        "|---|" + "---:|" * n,
    ]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def study_sections(
    calibration: list[dict] | None, layer_errors: dict[str, list[dict]] | None, selective: dict | None = None
) -> str:
    """The calibration study's table, the selective sweep's and each variant's worst layers, as Markdown sections."""
    from qbench.measure import calibration_study, layer_error

    out = ""
    if calibration:
        out += "## Calibration study\n\n" + calibration_study.render_markdown(calibration) + "\n"
    from qbench.measure import selective as sweep

    for one in sweep.sweeps(selective):
        out += f"## {sweep.title(one)}\n\n"
        out += sweep.render_markdown(one) + "\n" + sweep.note(one) + "\n\n"
    if layer_errors:
        out += "## Per-layer quantization error (lowest SNR first)\n\n"
        out += "".join(layer_error.render_markdown(v, rows) + "\n" for v, rows in layer_errors.items())
    return out


def write_reports(
    rows: list[dict],
    environment: dict,
    out_dir: Path,
    notes: list[str] = (),
    references: dict | None = None,
    class_names: list[str] | None = None,
    harness_floor: dict | None = None,
    calibration: list[dict] | None = None,
    layer_errors: dict[str, list[dict]] | None = None,
    selective: dict | list | None = None,
) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md = out_dir / "summary.md"
    js = out_dir / "summary.json"
    env_lines = "".join(f"- {k}: {v}\n" for k, v in sorted(environment.items()))
    confusion = "".join(
        f"\n## Confusion matrix: {r['variant']}\n\n"
        f"precision {r['precision']:.4f}, recall (sensitivity) {r['recall']:.4f}, F1 {r['f1']:.4f}, G-mean {r['g_mean']:.4f}\n\n"
        + render_confusion(r["confusion_matrix"], class_names)
        for r in rows
        if r.get("confusion_matrix")
    )
    atomic_write_text(
        md,
        "# qbench summary\n\n"
        + render_markdown(rows)
        + "\nSpeed boost (ratio of median single-image latencies) and size reduction (ratio of "
        "file sizes) are relative to `native` (graph-mode TensorFlow).  End to end: float image in, float "
        "scores out, input quantization and output dequantization included; invoke: the runtime alone, "
        "input already in its dtype, raw output, timed inside the same calls.  Intervals are 95 % "
        "block-bootstrap intervals over the interleaved rounds (speed boosts paired round by round).\n\n"
        + "".join(f"{note}\n\n" for note in notes)
        + (f"## Costs beyond one warm call\n\n{render_costs(rows)}\n{COSTS_NOTE}\n\n" if render_costs(rows) else "")
        + (f"## Throughput\n\n{render_throughput(rows)}\n{THROUGHPUT_NOTE}\n\n" if render_throughput(rows) else "")
        + study_sections(calibration, layer_errors, selective)
        + "## Environment\n\n"
        + env_lines
        + confusion,
    )
    from qbench.measure.selective import SWEPT_VARIANT, sweeps, variant_of

    all_sweeps = sweeps(selective)
    atomic_write_json(
        js,
        {
            "rows": rows,
            "environment": environment,
            "references": references or {},
            "harness_floor": harness_floor,
            "calibration_study": calibration or [],
            "layer_errors": layer_errors or {},
            "selective_sweep": next((one for one in all_sweeps if variant_of(one) == SWEPT_VARIANT), None),
            "selective_sweep_peers": [one for one in all_sweeps if variant_of(one) != SWEPT_VARIANT],
        },
    )
    return md, js
