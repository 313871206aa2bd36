"""The portable baseline: per-image predictions and same-run latency ratios, committed with the model.

One JSON file per model and test split, in ``baselines/portable/``, named by
the model's content key and the dataset fingerprint, so a different model or
split never meets a baseline that is not its own.  It holds what does not
depend on how fast the machine is:

* each variant's predicted label for every test image (the McNemar accuracy
  gate pairs against them);
* each variant's p10 latency as a ratio to ``native`` in the same interleaved
  run (what the latency gate checks on a machine with no stored run of its
  own; a different kind of CPU may legitimately move these ratios, and the
  file says which CPU recorded them).

Written atomically, and only after a run whose tests all passed
(``--qbench-portable-save``).
"""

from __future__ import annotations

import json
from pathlib import Path

from qbench.errors import QBenchError
from qbench.fsutil import atomic_write_json


def baseline_path(baseline_dir: Path, dataset_name: str, model_key: str, dataset_fingerprint: str) -> Path:
    return Path(baseline_dir) / "portable" / f"{dataset_name}-{model_key}-{dataset_fingerprint}.json"


def load(path: Path) -> dict[str, dict]:
    """``{variant: {"accuracy", "predictions", "p10_ratio_to_reference"?}}``; empty when there is no file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["variants"])
    except (ValueError, KeyError, TypeError) as exc:
        raise QBenchError(f"portable baseline {path} is unreadable ({exc}); delete it or record it again") from None


def save(path: Path, evaluations: dict, ratios: dict[str, float], environment: dict) -> list[str]:
    """Merge the variants' predictions and ratios into ``path`` (other variants kept); return the variants written."""
    variants = load(path)
    for name, ev in evaluations.items():
        entry = {"accuracy": round(float(ev.accuracy), 6), "predictions": [int(p) for p in ev.y_pred]}
        if name in ratios:
            entry["p10_ratio_to_reference"] = round(float(ratios[name]), 5)
        variants[name] = entry
    atomic_write_json(
        path,
        {
            "what": "per-image predicted labels on the test split and p10 latency ratios to the reference variant, "
            "from one interleaved run; qbench's gate compares against them",
            "recorded_on": {
                k: environment.get(k)
                for k in ("cpu", "threads", "tensorflow_version", "ai_edge_litert_version", "apache_tvm_version")
            },
            "variants": dict(sorted(variants.items())),
        },
    )
    return sorted(evaluations)
