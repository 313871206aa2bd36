"""The throughput table: images per second by batch size and with concurrent streams (:mod:`qbench.measure.throughput`)."""

from __future__ import annotations

THROUGHPUT_NOTE = (
    "Throughput: images per second, end to end (float images in, float scores out), median (range) over "
    "interleaved blocks; batch B: one call on B images in the variant's own worker; N streams: N workers of the "
    "variant calling single images at once, every other worker paused. Batch 1 is the latency's calls, "
    "so it reads about 1000 / the median latency in ms."
)


def _cell(fig) -> str:
    if fig is None:
        return "n/a"
    if isinstance(fig, str):
        return fig
    low, high = fig["range"]
    return f"{fig['img_s']:.0f} ({low:.0f}-{high:.0f})"


def throughput_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the throughput table, for Markdown and HTML alike (no rows: nothing measured)."""
    measured = [r for r in rows if r.get("throughput")]
    batches = sorted({int(b) for r in measured for b in r["throughput"]["batches"]})
    streams = sorted({r["throughput"]["streams"]["count"] for r in measured if r["throughput"].get("streams")})
    header = ["Variant", *(f"Batch {b} [img/s]" for b in batches), *(f"{n} streams [img/s]" for n in streams), "Best"]
    body = []
    for r in measured:
        tp = r["throughput"]
        cells = [r["variant"], *(_cell(tp["batches"].get(str(b))) for b in batches)]
        cells += [_cell(tp.get("streams")) for _ in streams]
        cells.append(tp.get("best", "n/a"))
        body.append(cells)
    return header, body


def render_throughput(rows: list[dict]) -> str:
    """The throughput table in Markdown, or ``""`` if nothing was measured."""
    header, body = throughput_cells(rows)
    if not body:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)]) + "\n"
