"""The selective sweep: keep the K worst-quantized operators in float, for several K, and choose one.

From diagnosis to fix: ``tflite-int8-selective`` (:mod:`qbench.backends.tflite_selective`)
is built for each K of ``--qbench-selective-k`` (default 0, 1, 2, 4, 8), the
operators ranked by their own int8 error on train-split images.  Each
model is evaluated on the test split in a worker of its own and timed end
to end in rounds interleaved with the others and with ``tflite-int8`` and
``tflite-fp32`` (as every variant is timed).  The chosen K is the smallest
whose accuracy is within ``--qbench-selective-target`` (default 0.25 pp) of
native's, or, if none is, "none reached" and the most accurate one (the
smallest K of those); the chosen model is the ``tflite-int8-selective`` row.

The choice looks at test-split accuracy, as a user reading the table
would; the ranking never does.  Each K's model is cached like a variant
under ``build/variants/<model>/sweep/``.
"""

from __future__ import annotations

from qbench.backends.tflite_selective import NAME as SWEPT_VARIANT

REFERENCES = ("tflite-int8", "tflite-fp32")  # timed beside the sweep's models, as the figure's reference points
PEER_VARIANT = "openvino-int8-selective"  # the same ranking through NNCF's ignored_scope (qbench.backends.openvino_selective)
SWEPT_REFERENCES = {SWEPT_VARIANT: REFERENCES, PEER_VARIANT: ("openvino-int8", "openvino-fp32")}
TITLES = {
    SWEPT_VARIANT: "Selective quantization: the K worst-quantized operators kept in float",
    PEER_VARIANT: "Selective quantization in OpenVINO: the same operators in NNCF's ignored_scope",
}
BUDGET_SECONDS = 0.4  # interleaved timing per model (5 rounds of 0.1 s blocks at least); the chosen one is timed again as its row


SWEEP_NOTE = (
    "Operators ranked by their own int8 error (TFLite's QuantizationDebugger, layer-wise: each quantized operator "
    "against the same operator in float on the same inputs, SNR in dB) on train-split calibration images; each K's "
    "model keeps the K lowest in float (denylisted_nodes). Accuracy on the test split; median end-to-end latency "
    "timed in interleaved rounds with tflite-int8 and tflite-fp32; the chosen K (bold) looks at test accuracy, "
    "the ranking never does."
)


PEER_NOTE = (
    "The same ranking (TFLite's, on train-split images) applied to NNCF: each K's model is openvino-int8 with the "
    "K worst operators' OpenVINO nodes in nncf.IgnoredScope, found by position (the i-th conv/dense layer of "
    "tflite-fp32 is the i-th of openvino-fp32, checked by weight shape: convert_model keeps no tensor names); "
    "a ranked operator that is not a conv or dense layer has no node and is listed as unmapped. Timed in "
    "interleaved rounds with openvino-int8 and openvino-fp32."
)


def variant_of(sweep: dict) -> str:
    """The swept variant a sweep is of (a sweep stored before there were two is TFLite's)."""
    return sweep.get("variant", SWEPT_VARIANT)


def references_of(name: str) -> tuple[str, str]:
    """The int8 and fp32 variants a swept variant's points are timed against."""
    return SWEPT_REFERENCES.get(name, REFERENCES)


def title(sweep: dict) -> str:
    return TITLES.get(variant_of(sweep), TITLES[SWEPT_VARIANT])


def note(sweep: dict) -> str:
    return PEER_NOTE if variant_of(sweep) == PEER_VARIANT else SWEEP_NOTE


def sweeps(selective) -> list[dict]:
    """The report's sweeps as a list (one dict, a list of them, or None)."""
    return [s for s in (selective if isinstance(selective, list) else [selective]) if s]


def public(sweep: dict | None) -> dict | None:
    """The sweep as the report stores it (without the chosen artifact's record)."""
    return None if sweep is None else {k: v for k, v in sweep.items() if k != "artifact"}


def choose(points: list[dict], native_accuracy: float | None, target: float) -> dict:
    """The chosen point of ``points`` (each with ``k`` and ``accuracy``) and whether it reached the target."""
    ordered = sorted(points, key=lambda p: p["k"])
    if native_accuracy is not None:
        for point in ordered:
            if native_accuracy - point["accuracy"] <= target + 1e-12:
                return {"k": point["k"], "reached": True}
    best = max(ordered, key=lambda p: (p["accuracy"], -p["k"]))
    return {"k": best["k"], "reached": False}


def sweep_rows(points: list[dict], native_accuracy: float | None, references: dict, chosen: dict) -> list[dict]:
    """One row per K: accuracy, drop vs native, median latency (ms) and against each reference, size, float operators."""
    rows = []
    for p in sorted(points, key=lambda q: q["k"]):
        row = {
            "k": p["k"],
            "accuracy": p["accuracy"],
            "drop_vs_native": None if native_accuracy is None else native_accuracy - p["accuracy"],
            "median_ms": p.get("median_ms"),
            "median_ci_ms": p.get("median_ci_ms"),
            "size_bytes": p["size_bytes"],
            "float_operators": p["float_operators"],
            "float_snr_db": p.get("float_snr_db", []),
            "artifact": p["artifact"],
            "chosen": p["k"] == chosen["k"],
        }
        if "unmapped" in p:
            row["unmapped"] = p["unmapped"]
        for ref, median in references.items():
            row[f"latency_vs_{ref}"] = p["median_ms"] / median if p.get("median_ms") and median else None
        rows.append(row)
    return rows


def _short(tensor: str) -> str:
    """A readable operator name: the Keras layer the converter named the tensor after (``block_12_project_BN``)."""
    first = tensor.split(";")[0]
    parts = [part for part in first.split("/") if part]
    layer = next((part for part in parts if part.startswith(("block_", "Conv", "expanded", "dense", "out_relu"))), None)
    return (layer or parts[-1] if parts else tensor).removesuffix("_1")


def table_cells(sweep: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the sweep's table, for Markdown and HTML alike (the chosen K marked with a star)."""
    rows = sweep["rows"]
    refs = [r for r in references_of(variant_of(sweep)) if any(row.get(f"latency_vs_{r}") is not None for row in rows)]
    head = ["K", "Accuracy", "Drop vs native", "Median [ms] (95% CI)", *(f"vs {r}" for r in refs), "Size [KiB]"]
    head.append("Kept in float (own SNR dB)")
    body = []
    for r in rows:
        ci = r.get("median_ci_ms")
        median = "n/a" if r["median_ms"] is None else f"{r['median_ms']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
        kept = ", ".join(
            f"{_short(t)} ({snr:.1f})" if snr is not None else f"{_short(t)} (no signal)"
            for t, snr in zip(r["float_operators"], r["float_snr_db"], strict=False)
        )
        if r.get("unmapped"):
            kept = (kept + "; " if kept else "") + f"{len(r['unmapped'])} unmapped (no OpenVINO node)"
        body.append(
            [
                f"{r['k']} *" if r["chosen"] else str(r["k"]),
                f"{r['accuracy']:.4f}",
                "n/a" if r["drop_vs_native"] is None else f"{r['drop_vs_native'] * 100:+.2f} pp",
                median,
                *(_ratio(r.get(f"latency_vs_{ref}")) for ref in refs),
                f"{r['size_bytes'] / 1024:.0f}",
                kept or "none",
            ]
        )
    return head, body


def render_markdown(sweep: dict) -> str:
    """The sweep's table and its choice, in Markdown."""
    head, body = table_cells(sweep)
    lines = ["| " + " | ".join(head) + " |", "|---:|" + "---:|" * (len(head) - 2) + "---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n\n" + choice_line(sweep) + " (*: the chosen K)\n"


def _ratio(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def choice_line(sweep: dict) -> str:
    """One sentence: which K is the swept variant's row (``tflite-int8-selective``'s by default), and why."""
    chosen, target, name = sweep["chosen"], sweep["target"], variant_of(sweep)
    row = next(r for r in sweep["rows"] if r["k"] == chosen["k"])
    if chosen["reached"]:
        return (
            f"Chosen: K={chosen['k']}, the smallest whose accuracy is within {target * 100:.2f} pp of native "
            f"({row['accuracy']:.4f}); it is the {name} row."
        )
    why = "native was not measured" if row["drop_vs_native"] is None else f"the best is {row['drop_vs_native'] * 100:.2f} pp"
    return (
        f"Chosen: none reached {target * 100:.2f} pp of native ({why}); the {name} row is K={chosen['k']}, "
        f"the most accurate ({row['accuracy']:.4f})."
    )
