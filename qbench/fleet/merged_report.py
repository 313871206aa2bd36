"""One report for the fleet: variant x machine, each machine's own report beside it.

``<reports>/fleet/`` holds ``summary.json``, ``summary.md`` and ``index.html``
(each variant's median latency with its interval, speed boost, accuracy and
gate verdict on each machine; a plot of each variant's latency per machine)
and ``machines/<worker>-<fingerprint id>/`` with what that machine's own run
wrote.  A machine that was lost, refused, timed out or failed has a column
that says so in one line.  Figures are never compared across machines:
each column is gated against that machine's own stored run or same-job base.

The directory is written beside the old one and swapped in at the end, so a
driver killed while writing leaves the previous fleet report whole.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

from qbench.core.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from qbench.report import plots
from qbench.report.html import STYLE, embedded_figure


def machine_key(outcome: dict) -> str:
    """``<worker name>-<fingerprint id>``: the fingerprint names the kind of machine, the name tells two of a kind apart."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", outcome["name"])
    return f"{name}-{outcome['machine_id']}" if outcome.get("machine_id") else name


def _verdicts(gate: dict | None, variant: str) -> tuple[str, list[str]]:
    """``PASS``/``FAIL``/``not gated`` for one variant on one machine, and its verdict lines."""
    mine = [v for v in (gate or {}).get("verdicts", []) if v["variant"] == variant]
    if not mine:
        return "not gated", []
    return ("PASS" if all(v["ok"] for v in mine) else "FAIL"), [v["line"] for v in mine]


def _cell(row: dict, gate: dict | None) -> dict:
    verdict, lines = _verdicts(gate, row["variant"])
    low, high = row.get("median_ci_low_ms"), row.get("median_ci_high_ms")
    return {
        "median_ms": row.get("median_latency_ms"),
        "ci_ms": [low, high] if low is not None and high is not None else None,
        "speed_boost": row.get("speed_boost"),
        "accuracy": row.get("accuracy"),
        "status": row.get("status"),
        "verdict": verdict,
        "verdict_lines": lines,
    }


def _json_file(files: dict, name: str) -> dict | None:
    try:
        return json.loads(files[name]) if name in files else None
    except ValueError:
        return None


def merge(outcomes: list[dict], driver: dict) -> dict:
    """What ``summary.json`` holds: the machines (status, fingerprint, timestamps, gate) and the variant x machine cells."""
    machines, cells, variants = [], {}, []
    for outcome in outcomes:
        key = machine_key(outcome)
        files = outcome.get("files") or {}
        summary, gate = _json_file(files, "summary.json"), _json_file(files, "gate.json")
        machines.append(
            {
                "key": key,
                "name": outcome["name"],
                "address": outcome.get("address"),
                "host": outcome.get("host"),
                "status": outcome["status"],
                "why": outcome.get("why"),
                "machine_id": outcome.get("machine_id"),
                "machine": outcome.get("machine"),
                "isa_class": (outcome.get("fingerprint") or {}).get("isa_class"),
                "started": outcome.get("started"),
                "ended": outcome.get("ended"),
                "waited_s": outcome.get("waited_s"),
                "exit_code": outcome.get("exit_code"),
                # the machine's own pytest verdict: its accuracy floors, checks and gate (exit 0), not only gate.json
                "passed": outcome["status"] == "measured" and outcome.get("exit_code") == 0,
                "gate": (gate or {}).get("verdict"),
                "gate_mode": (gate or {}).get("mode"),
                "gate_passed": (gate or {}).get("passed"),
                "report": f"machines/{key}/index.html" if "index.html" in files else None,
            }
        )
        if outcome["status"] != "measured" or summary is None:
            continue
        for row in summary.get("rows", []):
            if row["variant"] not in variants:
                variants.append(row["variant"])
            cells.setdefault(row["variant"], {})[key] = _cell(row, gate)
    return {"driver": driver, "machines": machines, "variants": variants, "cells": cells}


def passed(merged: dict) -> bool:
    """Every machine measured, and every machine's own run passed (its floors, checks and gate)."""
    return all(m["passed"] for m in merged["machines"])


def _format_cell(cell: dict | None) -> str:
    if not cell:
        return "-"
    if cell["median_ms"] is None:
        parts = [cell.get("status") or "not timed"]
    else:
        ci = cell["ci_ms"]
        parts = [f"{cell['median_ms']:.3f} ms" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")]
    if cell.get("speed_boost") is not None:
        parts.append(f"{cell['speed_boost']:.2f}x")
    if cell.get("accuracy") is not None:
        parts.append(f"acc {cell['accuracy']:.4f}")
    parts.append(cell["verdict"])
    return ", ".join(parts)


def machine_line(m: dict) -> str:
    """One line per machine: what it is, how its run went, its gate."""
    head = f"{m['name']} ({m.get('host') or '?'}"
    head += f"; {m['machine']})" if m.get("machine") else ")"
    if m["status"] != "measured":
        return f"{head}: {m['why']}"
    took = f", measured {m['ended'] - m['started']:.0f} s" if m.get("started") else ""
    failed = "" if m["passed"] else f"its run FAILED (pytest exit {m['exit_code']}); "
    gate = m["gate"] or "no gate verdict"
    if m.get("machine_id") and m.get("machine"):  # the head already says which machine
        gate = gate.replace(f" on machine {m['machine_id']} ({m['machine']})", "")
    return f"{head}{took}: {failed}{gate}"


def render_markdown(merged: dict) -> str:
    keys = [m["key"] for m in merged["machines"]]
    names = {m["key"]: m["name"] for m in merged["machines"]}
    lines = ["| Variant | " + " | ".join(names[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for variant in merged["variants"]:
        lines.append(f"| {variant} | " + " | ".join(_format_cell(merged["cells"][variant].get(k)) for k in keys) + " |")
    status = {m["key"]: m for m in merged["machines"]}
    lost = [k for k in keys if status[k]["status"] != "measured"]
    if lost:
        lines.append("| (machine) | " + " | ".join(status[k]["status"] if k in lost else "measured" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _html_page(merged: dict, figure: Path | None) -> str:
    keys = [m["key"] for m in merged["machines"]]
    by_key = {m["key"]: m for m in merged["machines"]}
    head = "".join(
        f"<th>{html.escape(by_key[k]['name'])}<br><span class='note'>{html.escape(by_key[k].get('machine_id') or '')}</span>"
        + (f"<br><a href='{html.escape(by_key[k]['report'])}'>its report</a>" if by_key[k].get("report") else "")
        + "</th>"
        for k in keys
    )
    body = []
    for variant in merged["variants"]:
        tds = []
        for k in keys:
            cell = merged["cells"][variant].get(k)
            bad = cell is not None and cell["verdict"] == "FAIL"
            title = html.escape("\n".join(cell["verdict_lines"])) if cell else ""
            tds.append(f"<td class='num{' bad' if bad else ''}' title='{title}'>{html.escape(_format_cell(cell))}</td>")
        body.append(f"<tr><td>{html.escape(variant)}</td>{''.join(tds)}</tr>")
    status_row = "".join(
        f"<td class='{'ok' if by_key[k]['status'] == 'measured' else 'bad'}'>{html.escape(by_key[k]['status'])}</td>"
        for k in keys
    )
    items = "".join(f"<li class='{'' if m['passed'] else 'bad'}'>{html.escape(machine_line(m))}</li>" for m in merged["machines"])
    ok = passed(merged)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>qbench fleet report</title>"
        f"<style>{STYLE} td.bad {{ background: #fde8e8; font-weight: bold; }} td.ok {{ color: #2a7d2a; }}</style></head><body>"
        "<h1>qbench fleet report</h1>"
        f"<div class='gate {'pass' if ok else 'fail'}'><div class='head'>{'PASS' if ok else 'FAIL'} on "
        f"{sum(m['status'] == 'measured' for m in merged['machines'])} of {len(keys)} machine(s)</div><ul>{items}</ul></div>"
        "<p class='note'>Each cell: median end-to-end latency (95 % interval), speed boost over native on that machine, "
        "accuracy, and that machine's gate verdict against its own stored run or same-job base (hover for the lines). "
        "Figures are never compared across machines.</p>"
        f"<table><tr><th>Variant</th>{head}</tr>{''.join(body)}<tr><td>machine</td>{status_row}</tr></table>"
        + (embedded_figure(figure, "Each variant's median latency per machine (log scale, 95 % interval)") if figure else "")
        + "</body></html>\n"
    )


def write(out_dir: Path, outcomes: list[dict], driver: dict) -> dict:
    """Write the fleet report to ``out_dir`` (swapped in whole); returns the merged summary."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    new = out_dir.with_name(f".{out_dir.name}-new-{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    merged = merge(outcomes, driver)
    for outcome in outcomes:
        for rel, data in (outcome.get("files") or {}).items():
            target = new / "machines" / machine_key(outcome) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
    labels = {m["key"]: m["name"] for m in merged["machines"]}
    figure = plots.latency_per_machine(merged["cells"], labels, new / "figures" / "latency_per_machine.png")
    atomic_write_text(
        new / "summary.md",
        "# qbench fleet summary\n\n"
        + render_markdown(merged)
        + "\n"
        + "".join(f"- {machine_line(m)}\n" for m in merged["machines"]),
    )
    atomic_write_text(new / "index.html", _html_page(merged, figure))
    atomic_write_json(new / "summary.json", merged)
    old = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(new, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return merged
