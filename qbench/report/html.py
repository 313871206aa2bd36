"""``index.html``: the run as one page a person would rather look at than read.

One self-contained file (every figure embedded as a ``data:`` PNG, so it can
be mailed or attached to a CI run) next to the PNGs themselves in
``figures/``.  The figures come from :mod:`qbench.report.plots`; the numbers are the
same rows ``summary.json`` holds.  A script marks ``<body>`` with how many
images decoded (``data-images-loaded`` of ``data-images-total``), which is
what the headless-browser test reads.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from qbench.core.fsutil import atomic_write_text
from qbench.report import plots
from qbench.report.tables import (
    COSTS_NOTE,
    costs_cells,
    format_base_ratio,
    format_best_throughput,
    format_interval,
    format_value,
)
from qbench.report.throughput_table import THROUGHPUT_NOTE, throughput_cells

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; }
.gate { border: 2px solid; border-radius: 6px; padding: 0.6em 1em; margin: 1em 0; }
.gate.pass { border-color: #2a7d2a; background: #eef8ee; } .gate.fail { border-color: #b22; background: #fdeeee; }
.gate.none { border-color: #b80; background: #fff8e6; }
.gate .head { font-size: 1.4em; font-weight: bold; } .gate li.bad { color: #b22; font-weight: bold; }
.gate table td { background: #fff; } .gate tr.failed td { background: #f5c2c2; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { flex: 1 1 320px; max-width: 380px; }
.note { color: #555; font-size: 0.92em; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.imagesLoaded = ok;
});
"""


def embedded_figure(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(alt)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption class="note">{alt}</figcaption></figure>'


def _summary_table(rows: list[dict]) -> str:
    head = [
        "Variant",
        "Accuracy",
        "Speed boost (e2e)",
        "End-to-end median [ms] (95% CI)",
        "Invoke median [ms]",
        "p99 [ms]",
        "Throughput [img/s]",
        "Size [KiB]",
        "Size reduction",
        "Kernels (ISA here)",
        "Status",
    ]
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = [
            html.escape(r["variant"]),
            format_value(r.get("accuracy"), ".4f"),
            format_value(r.get("speed_boost"), ".2f"),
            format_value(r.get("median_latency_ms"), ".3f") + format_interval(r, "median", ".3f"),
            format_value(r.get("invoke_median_ms"), ".3f"),
            format_value(r.get("p99_ms"), ".3f"),
            format_best_throughput(r),
            format_value(r["size_bytes"] / 1024 if r.get("size_bytes") else None, ".0f"),
            format_value(r.get("size_reduction"), ".2f"),
            html.escape(r.get("kernel_isa") or "n/a"),
            html.escape(r.get("status", "ok")),
        ]
        cls = ' class="failed"' if r.get("status", "ok") != "ok" else ""
        out.append(
            f"<tr{cls}><td>{cells[0]}</td>"
            + "".join(f'<td class="num">{c}</td>' for c in cells[1:-1])
            + f"<td>{cells[-1]}</td></tr>"
        )
    return "\n".join(out) + "</table>"


def _plain_table(header: list[str], body: list[list[str]]) -> str:
    """A table of text cells, the first column a name and the rest numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join(
        "<tr>" + "".join(f"<td{'' if i == 0 else ' class=num'}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in body
    )
    return f"<table><tr>{head}</tr>{cells}</table>"


def _calibration_table(rows: list[dict]) -> str:
    out = ["<table><tr><th>Calibration set</th><th>Samples</th><th>Accuracy</th><th>Drop vs native</th></tr>"]
    for r in rows:
        drop = "n/a" if r.get("drop_vs_native") is None else f"{r['drop_vs_native']:+.4f}"
        out.append(
            f"<tr><td>{html.escape(r['label'])}</td><td class='num'>{r['samples']}</td>"
            f"<td class='num'>{r['accuracy']:.4f}</td><td class='num'>{drop}</td></tr>"
        )
    return "\n".join(out) + "</table>"


def _layer_table(variant: str, layers: list[dict], n: int = 10) -> str:
    from qbench.measure.layer_error import layer_label, worst_layers

    out = [f"<table><tr><th>{html.escape(variant)}: tensor</th><th>op</th><th>SNR [dB]</th><th>max abs error</th></tr>"]
    for r in worst_layers(layers, n):
        out.append(
            f"<tr><td><code>{html.escape(layer_label(r['tensor']))}</code></td><td>{html.escape(r['op'])}</td>"
            f"<td class='num'>{r['snr_db']:.1f}</td><td class='num'>{r['max_abs_error']:.4g}</td></tr>"
        )
    return "\n".join(out) + "</table>"


def _gate_section(gate: dict | None) -> str:
    """The gate first: PASS/FAIL, the mode that gated latency, every verdict line with its numbers."""
    if gate is None:
        return '<div class="gate none"><div class="head">Gate: not run</div><p>no gate test ran in this run</p></div>'
    kind = "pass" if gate["passed"] and gate["mode"] != "latency not gated" else ("fail" if not gate["passed"] else "none")
    head = "PASS" if gate["passed"] else "FAIL"
    if gate["passed"] and gate["mode"] == "latency not gated":
        head = "PASS (accuracy only)" if gate["gated"] else "NOTHING GATED"
    out = [f'<div class="gate {kind}"><div class="head">Gate: {head}</div>']
    out.append(f"<p>Latency gated against: <b>{html.escape(gate['mode'])}</b></p>")
    out.append(f'<p class="note">{html.escape(gate["verdict"])}</p><ul>')
    out.extend(f'<li class="{"ok" if ok else "bad"}">{html.escape(line)}</li>' for line, ok in gate["lines"])
    out.append("</ul>")
    comparison = gate.get("comparison") or {}
    if comparison:
        out.append("<table><tr><th>Variant</th><th>Base p10 [ms]</th><th>Candidate p10 [ms]</th><th>Ratio (95% CI)</th>")
        out.append("<th>Base accuracy</th><th>Candidate accuracy</th></tr>")
        for variant, c in comparison.items():
            ratio = format_base_ratio(c)
            bad = "failure" in c or not all(c.get(k, True) for k in ("latency_ok", "accuracy_ok"))
            cells = [
                format_value(c.get("base_p10_ms"), ".3f"),
                format_value(c.get("candidate_p10_ms"), ".3f"),
                ratio,
                format_value(c.get("base_accuracy"), ".4f"),
                format_value(c.get("candidate_accuracy"), ".4f"),
            ]
            out.append(
                f'<tr class="{"failed" if bad else ""}"><td>{html.escape(variant)}</td>'
                + "".join(f'<td class="num">{html.escape(x)}</td>' for x in cells)
                + "</tr>"
            )
        out.append("</table>")
    return "\n".join(out) + "</div>"


def write_html_report(
    out_dir: Path,
    rows: list[dict],
    *,
    title: str = "qbench report",
    notes: list[str] = (),
    environment: dict | None = None,
    latency_samples_ms: dict | None = None,
    calibration: list[dict] | None = None,
    reference_accuracy: float | None = None,
    layer_errors: dict[str, list[dict]] | None = None,
    class_names: list[str] | None = None,
    gate: dict | None = None,
    selective: dict | list | None = None,
) -> Path:
    """Draw every figure into ``out_dir/figures`` and write ``out_dir/index.html``; returns its path."""
    out_dir = Path(out_dir)
    figs = out_dir / "figures"
    drawn: set[str] = set()

    def figure(path: Path | None, alt: str) -> str:
        if path is not None:
            drawn.add(Path(path).name)
        return embedded_figure(path, alt)

    parts = [f"<h1>{html.escape(title)}</h1>", _gate_section(gate)]
    parts.append("<h2>Accuracy, latency and size</h2>")
    parts.append(
        figure(
            plots.accuracy_latency(rows, figs / "accuracy_latency.png"),
            "accuracy vs end-to-end median latency; bubble area: model size; bars: the median's 95 % interval",
        )
    )
    parts.append(_summary_table(rows))
    parts.extend(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    if latency_samples_ms:
        parts.append("<h2>Latency distributions</h2>")
        parts.append(
            figure(
                plots.latency_distributions(latency_samples_ms, figs / "latency_distributions.png"),
                "every timed call of the latest campaign; box: quartiles, whiskers: 1st-99th percentile",
            )
        )
    cost_header, cost_rows = costs_cells(rows)
    if cost_rows:
        parts.append("<h2>Costs beyond one warm call: load, first call, memory</h2>")
        parts.append(
            figure(
                plots.memory_bars(rows, figs / "memory.png"),
                "resident memory added by loading each variant and at its peak over the test split, beside its file size",
            )
        )
        parts.append(_plain_table(cost_header, cost_rows) + f"<p class='note'>{html.escape(COSTS_NOTE)}</p>")
    tp_header, tp_rows = throughput_cells(rows)
    if tp_rows:
        parts.append("<h2>Throughput: batches and concurrent streams</h2>")
        parts.append(
            figure(
                plots.throughput_by_batch(rows, figs / "throughput.png"),
                "images per second by batch size, end to end; bars: range over blocks; star: concurrent streams",
            )
        )
        parts.append(_plain_table(tp_header, tp_rows) + f"<p class='note'>{html.escape(THROUGHPUT_NOTE)}</p>")
    if calibration:
        parts.append("<h2>Calibration study</h2>")
        parts.append(
            figure(
                plots.calibration_curve(calibration, reference_accuracy, figs / "calibration.png"),
                "tflite-int8 accuracy by calibration set (all drawn from the train split)",
            )
        )
        parts.append(_calibration_table(calibration))
    from qbench.measure.selective import SWEPT_VARIANT, choice_line, note, sweeps, table_cells, variant_of
    from qbench.measure.selective import title as sweep_title

    for one in sweeps(selective):
        name = variant_of(one)
        png = "selective.png" if name == SWEPT_VARIANT else f"selective_{name}.png"
        parts.append(f"<h2>{html.escape(sweep_title(one))}</h2>")
        parts.append(
            figure(
                plots.selective_sweep(one, rows, figs / png),
                "accuracy against end-to-end median latency, one point per K; native and the int8 variant for reference",
            )
        )
        parts.append(_plain_table(*table_cells(one)))
        parts.append(f"<p>{html.escape(choice_line(one))}</p><p class='note'>{html.escape(note(one))}</p>")
    if layer_errors:
        parts.append("<h2>Per-layer quantization error</h2>")
        parts.append(
            figure(
                plots.layer_snr(layer_errors, figs / "layer_snr.png"),
                "SNR of each activation against the float model's, lowest first",
            )
        )
        parts.append('<div class="grid">' + "".join(_layer_table(v, layers) for v, layers in layer_errors.items()) + "</div>")
    confusions = [r for r in rows if r.get("confusion_matrix") and r.get("accuracy") is not None]
    if confusions:
        parts.append("<h2>Confusion matrices</h2><div class='grid'>")
        for r in confusions:
            png = plots.confusion(
                r["confusion_matrix"],
                class_names,
                f"{r['variant']} (accuracy {r['accuracy']:.4f})",
                figs / f"confusion_{r['variant']}.png",
            )
            parts.append(figure(png, f"{r['variant']}: rows true class, columns predicted"))
        parts.append("</div>")
    if environment:
        parts.append("<h2>Environment</h2><table>")
        parts.extend(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in sorted(environment.items())
        )
        parts.append("</table>")
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    for png in figs.glob("*.png"):  # an earlier run's figures (a variant not in this run) would mislead
        if png.name not in drawn:
            png.unlink(missing_ok=True)
    return index
