"""The report's figures, drawn with matplotlib (Agg, no display) and written atomically as PNGs.

Each function takes plain rows (what ``summary.json`` holds) and a target
path, so a figure can be redrawn from a stored report without rerunning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.core.fsutil import atomic_path
from qbench.measure.layer_error import layer_label

DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_x(ax) -> None:
    """Log x axis labelled in plain numbers, without the crowded minor labels."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig, out: Path) -> Path:
    plt = _pyplot()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(out)


def accuracy_latency(rows: list[dict], out: Path) -> Path | None:
    """Accuracy against end-to-end median latency (log scale), bubble area proportional to model size;
    horizontal bars are the median's 95 % interval where the run has one."""
    rows = [r for r in rows if r.get("accuracy") is not None and r.get("median_latency_ms")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    sizes = np.array([(r.get("size_bytes") or 0) / 1024 for r in rows], dtype=float)
    area = 60 + 1400 * sizes / max(sizes.max(), 1.0)
    palette = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    colors = palette(np.arange(len(rows)) % palette.N)
    for r, a, c in zip(rows, area, colors, strict=True):
        x, y = r["median_latency_ms"], r["accuracy"]
        lo, hi = r.get("median_ci_low_ms"), r.get("median_ci_high_ms")
        if lo is not None and hi is not None:
            ax.errorbar(x, y, xerr=[[max(x - lo, 0)], [max(hi - x, 0)]], fmt="none", ecolor=c, elinewidth=1.5, capsize=3)
        ax.scatter([x], [y], s=a, color=c, alpha=0.55, edgecolors="black", linewidths=0.6)
    _log_x(ax)
    ax.set_xlabel("end-to-end median latency per image [ms] (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs latency (bubble area: model size)")
    ax.grid(True, which="both", alpha=0.3)
    ys = [r["accuracy"] for r in rows]
    pad = max(0.01, (max(ys) - min(ys)) * 0.25)
    ax.set_ylim(min(ys) - pad, min(1.0, max(ys) + pad) + pad / 2)
    _place_labels(
        fig,
        ax,
        [(r["median_latency_ms"], r["accuracy"], f"{r['variant']}\n{kib:.0f} KiB") for r, kib in zip(rows, sizes, strict=True)],
    )
    return _save(fig, out)


def _place_labels(fig, ax, points: list[tuple[float, float, str]]) -> None:
    """Label each point beside it, at the first nearby spot that overlaps no other label and stays
    inside the axes, with a leader line to its point (variants with the same accuracy and latency,
    fp32 and fp16, would otherwise print on top of each other, and a moved label must still say whose it is)."""
    fig.canvas.draw()  # settle the autoscaled limits first: the label boxes are measured in pixels
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    near = [(12, 8, "left"), (12, -26, "left"), (-12, 8, "right"), (-12, -26, "right")]
    far = [
        (side * 18, step * sign * 14, "left" if side > 0 else "right")
        for step in range(2, 9)
        for sign in (1, -1)
        for side in (1, -1)
    ]
    placed = []
    for x, y, text in sorted(points, key=lambda p: (-p[1], p[0])):
        spot, spot_box = near[0], None
        for dx, dy, ha in near + far:
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=ha)
            box = label.get_window_extent(renderer).expanded(1.04, 1.08)  # the text alone, no leader line yet
            label.remove()
            spot_box = spot_box or box  # nowhere free: the first spot, overlapping
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                spot, spot_box = (dx, dy, ha), box
                break
        arrow = {"arrowstyle": "-", "color": "0.35", "lw": 0.7, "shrinkA": 0, "shrinkB": 0}
        ax.annotate(text, (x, y), xytext=spot[:2], textcoords="offset points", fontsize=8, ha=spot[2], arrowprops=arrow)
        placed.append(spot_box)


def confusion(matrix, class_names, title: str, out: Path) -> Path:
    plt = _pyplot()
    cm = np.asarray(matrix)
    n = len(cm)
    names = list(class_names) if class_names and len(class_names) == n else [str(i) for i in range(n)]
    side = min(9.0, 2.5 + 0.32 * n)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 12:
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if cm[i, j] > threshold else "black"
                )
    ticks = np.arange(n)
    ax.set_xticks(ticks, names, rotation=90 if n > 12 else 0, fontsize=7 if n > 12 else 9)
    ax.set_yticks(ticks, names, fontsize=7 if n > 12 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, out)


def latency_distributions(samples_ms: dict[str, np.ndarray], out: Path) -> Path | None:
    """Every per-call end-to-end time of each variant on one (log) axis: box for the quartiles,
    whiskers at the 1st and 99th percentiles, the dots beyond them."""
    samples_ms = {k: np.asarray(v, dtype=float) for k, v in samples_ms.items() if len(v)}
    if not samples_ms:
        return None
    plt = _pyplot()
    names = list(samples_ms)
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.6))
    ax.boxplot(
        [samples_ms[n] for n in names],
        orientation="horizontal",
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.3},
        medianprops={"color": "firebrick"},
    )
    ax.set_yticks(np.arange(1, len(names) + 1), [f"{n} ({len(samples_ms[n])} calls)" for n in names], fontsize=9)
    ax.invert_yaxis()
    _log_x(ax)
    ax.set_xlabel("end-to-end latency per call [ms] (log scale)")
    ax.set_title("Latency distributions (same interleaved rounds)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, out)


def calibration_curve(rows: list[dict], reference_accuracy: float | None, out: Path) -> Path | None:
    """int8 accuracy against the calibrated fraction of the train split, with the one-class and
    same-size balanced sets as separate markers and the float model as a line."""
    fractions = [r for r in rows if r["kind"] == "fraction"]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    if fractions:
        xs = [r["samples"] for r in fractions]
        ax.plot(xs, [r["accuracy"] for r in fractions], "o-", label="stratified fraction of train")
        for r in fractions:
            ax.annotate(
                f"{r['fraction']:g}", (r["samples"], r["accuracy"]), xytext=(4, -12), textcoords="offset points", fontsize=8
            )
    # the one-class cross is drawn smaller and on top, so it stays visible when both score the same
    for kind, marker, color, size, z in (("balanced", "D", "seagreen", 120, 3), ("one-class", "X", "firebrick", 60, 4)):
        for r in (r for r in rows if r["kind"] == kind):
            ax.scatter([r["samples"]], [r["accuracy"]], marker=marker, s=size, color=color, label=r["label"], zorder=z)
    if reference_accuracy is not None:
        ax.axhline(reference_accuracy, color="gray", linestyle="--", label=f"native {reference_accuracy:.4f}")
    ax.margins(x=0.08)
    _log_x(ax)
    ax.set_xlabel("calibration images (log scale)")
    ax.set_ylabel("int8 test accuracy")
    ax.set_title("Calibration study (tflite-int8)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)


def layer_snr(layers_by_variant: dict[str, list[dict]], out: Path, worst: int = 20) -> Path | None:
    """Per-tensor SNR [dB] of each quantized variant's activations against the float model's,
    the ``worst`` tensors of each variant (lowest SNR at the top)."""
    layers_by_variant = {k: v for k, v in layers_by_variant.items() if v}
    if not layers_by_variant:
        return None
    plt = _pyplot()
    panels = len(layers_by_variant)
    height = 0.24 * min(worst, max(len(v) for v in layers_by_variant.values())) + 1.0
    # stacked on one dB axis, so the variants compare at a glance
    fig, axes = plt.subplots(panels, 1, figsize=(8, height * panels), squeeze=False, sharex=True, layout="constrained")
    for ax, (variant, layers) in zip(axes[:, 0], layers_by_variant.items(), strict=True):
        shown = sorted(layers, key=lambda r: r["snr_db"])[:worst]
        labels = [layer_label(r["tensor"]) for r in shown]
        bars = ax.barh(np.arange(len(shown)), [r["snr_db"] for r in shown], color="steelblue")
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_yticks(np.arange(len(shown)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("SNR [dB] (higher is better)")
        ax.set_title(f"{variant}: {len(shown)} lowest of {len(layers)} tensors")
        ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, out)


def latency_per_machine(cells: dict[str, dict[str, dict]], machines: dict[str, str], out: Path) -> Path | None:
    """Grouped bars: each variant's median end-to-end latency on each machine, with its 95 % interval (log scale).

    ``cells[variant][machine]`` holds ``median_ms``, ``ci_ms`` (low, high) or nothing for a machine without a
    figure; ``machines`` maps each machine's key to its legend label.
    """
    variants = [v for v in cells if any(cells[v].get(m, {}).get("median_ms") for m in machines)]
    if not variants or not machines:
        return None
    plt = _pyplot()
    width = 0.8 / len(machines)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(variants) * max(1, len(machines)) ** 0.5 + 2), 4.2))
    for i, (machine, label) in enumerate(machines.items()):
        xs, ys, lo, hi = [], [], [], []
        for j, variant in enumerate(variants):
            cell = cells[variant].get(machine, {})
            if not cell.get("median_ms"):
                continue
            low, high = cell.get("ci_ms") or (cell["median_ms"], cell["median_ms"])
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(cell["median_ms"])
            lo.append(cell["median_ms"] - low)
            hi.append(high - cell["median_ms"])
        ax.bar(xs, ys, width=width * 0.95, label=label, yerr=[lo, hi], capsize=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels(variants, rotation=30, ha="right")
    ax.set_ylabel("median end-to-end latency [ms] (log)")
    ax.set_title("Each variant's latency per machine (95 % interval)")
    ax.legend(fontsize="small", title="machine")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _save(fig, out)


def memory_bars(rows: list[dict], out: Path) -> Path | None:
    """Per variant: resident memory added by loading it and at its peak over the test split, beside its file size."""
    measured = [r for r in rows if r.get("peak_mib") is not None]
    if not measured:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(measured) + 2), 4.0))
    xs = np.arange(len(measured))
    series = (
        ("file size", [(r.get("size_bytes") or 0) / 2**20 for r in measured]),
        ("load (resident)", [r.get("load_mib") or 0 for r in measured]),
        ("peak over the test split", [r["peak_mib"] for r in measured]),
    )
    for i, (label, values) in enumerate(series):
        ax.bar(xs - 0.27 + 0.27 * i, values, width=0.26, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["variant"] for r in measured], rotation=30, ha="right")
    ax.set_ylabel("MiB")
    ax.set_title("Memory each variant adds to a worker that loaded nothing, beside its file size")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def throughput_by_batch(rows: list[dict], out: Path) -> Path | None:
    """Images per second against batch size, one line per variant (log-log; bars: the blocks' range); streams as
    a marker at the right, a runtime that takes one image a call as a single point."""
    measured = [r for r in rows if r.get("throughput") and any(isinstance(f, dict) for f in r["throughput"]["batches"].values())]
    if not measured:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in measured:
        points = sorted((int(b), f) for b, f in r["throughput"]["batches"].items() if isinstance(f, dict))
        xs = [b for b, _ in points]
        ys = [f["img_s"] for _, f in points]
        err = [[f["img_s"] - f["range"][0] for _, f in points], [f["range"][1] - f["img_s"] for _, f in points]]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=r["variant"])
        streams = r["throughput"].get("streams")
        if streams:
            ax.scatter([max(xs) * 1.6], [streams["img_s"]], marker="*", s=80, color=line[0].get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("images a call (batch); star: concurrent single-image streams")
    ax.set_ylabel("images per second")
    ax.set_title("Throughput by batch size (end to end)")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def selective_sweep(sweep: dict, rows: list[dict], out: Path) -> Path | None:
    """Accuracy against end-to-end median latency, one point per K of the selective sweep (labelled), with
    native and tflite-int8 (this run's rows) as reference points."""
    points = [r for r in sweep["rows"] if r.get("median_ms") is not None]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    ax.plot([p["median_ms"] for p in points], [p["accuracy"] for p in points], "o-", color="tab:purple", label="K kept in float")
    for p in points:
        label = f"K={p['k']}" + (" (chosen)" if p["chosen"] else "")
        ax.annotate(label, (p["median_ms"], p["accuracy"]), xytext=(4, 4), textcoords="offset points", fontsize=8)
    from qbench.measure.selective import references_of, variant_of

    int8, fp32 = references_of(variant_of(sweep))
    for name, marker in (("native", "s"), (int8, "D"), (fp32, "^")):
        row = next((r for r in rows if r["variant"] == name and r.get("median_latency_ms") and r.get("accuracy")), None)
        if row is not None:
            ax.scatter([row["median_latency_ms"]], [row["accuracy"]], marker=marker, s=60, label=name, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end median latency [ms] (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Selective quantization ({variant_of(sweep)}): accuracy against latency by K")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)
