"""The stored accuracy baseline: per-image predictions, committed with the model.

One JSON file per model and test split, in ``baselines/portable/``, named by
the model's content key and the dataset fingerprint, so a different model or
split never meets a baseline that is not its own.  It holds each variant's
predicted label for every test image; the McNemar accuracy gate pairs
against them when no same-job base is given (:mod:`qbench.gate.base`).

Predictions move with the CPU's instructions for some runtimes
(``onnxruntime-int8`` scored 0.8524 on an AVX2-only VM and 0.9443 on an
AVX-512 VNNI one, same model), so the file records the kind of CPU it was
made on (:func:`qbench.core.machine.isa_class`) and the gate uses it only on
that kind.  Latency is not stored here: ratios between variants do not carry
across machines either.

Written atomically, and only after a run whose tests all passed
(``--qbench-portable-save``).
"""

from __future__ import annotations

import json
from pathlib import Path

from qbench.core.errors import QBenchError
from qbench.core.fsutil import atomic_write_json


def baseline_path(baseline_dir: Path, dataset_name: str, model_key: str, dataset_fingerprint: str) -> Path:
    return Path(baseline_dir) / "portable" / f"{dataset_name}-{model_key}-{dataset_fingerprint}.json"


def read(path: Path) -> dict:
    """The whole file (``{}`` when there is none); an unreadable one is one sentence."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        dict(data["variants"])
        return data
    except (ValueError, KeyError, TypeError) as exc:
        raise QBenchError(f"portable baseline {path} is unreadable ({exc}); delete it or record it again") from None


def load(path: Path) -> dict[str, dict]:
    """``{variant: {"accuracy", "predictions"}}``; empty when there is no file."""
    return dict(read(path).get("variants", {}))


def predictions_for(path: Path, variant: str, isa: str | None = None) -> tuple[list | None, str]:
    """``(predictions, "")`` when ``variant`` has stored predictions from this kind of CPU, else ``(None, why not)``."""
    from qbench.core.machine import ISA_LABELS, machine_isa

    data = read(path)
    entry = data.get("variants", {}).get(variant)
    if entry is None:
        return None, f"no stored per-image predictions in {path} (a passing run with --qbench-portable-save records them)"
    isa = isa or machine_isa()
    recorded = data.get("recorded_on", {}).get("isa_class")
    if recorded != isa:
        made = ISA_LABELS.get(recorded, "an unrecorded kind of CPU") if recorded else "an unrecorded kind of CPU"
        return None, (
            f"the stored predictions in {path} were made on {made}, this CPU is {ISA_LABELS[isa]} "
            "(runtimes pick other kernels there); --qbench-base gates against a base measured here"
        )
    return entry["predictions"], ""


def save(path: Path, evaluations: dict, environment: dict) -> list[str]:
    """Merge the variants' predictions into ``path`` (other variants kept, if made on this kind of CPU); return those written."""
    from qbench.core.machine import machine_isa

    isa = machine_isa()
    previous = read(path)
    variants = dict(previous.get("variants", {})) if previous.get("recorded_on", {}).get("isa_class") == isa else {}
    for name, ev in evaluations.items():
        variants[name] = {"accuracy": round(float(ev.accuracy), 6), "predictions": [int(p) for p in ev.y_pred]}
    atomic_write_json(
        path,
        {
            "what": "per-image predicted labels on the test split, from one passing run; qbench's accuracy gate "
            "compares against them on the same kind of CPU (recorded_on.isa_class)",
            "recorded_on": {
                "isa_class": isa,
                **{
                    k: environment.get(k)
                    for k in ("cpu", "threads", "tensorflow_version", "ai_edge_litert_version", "apache_tvm_version")
                },
            },
            "variants": dict(sorted(variants.items())),
        },
    )
    return sorted(evaluations)
