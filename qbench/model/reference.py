"""The committed reference model, so every machine benchmarks the same weights.

Training MobileNetV2 from scratch is not bit-reproducible across machines
(same seed, native accuracy 0.9499 on one VM and 0.9109 on another), and an
accuracy gate cannot hold when its reference moves 4 pp.  The default
benchmark (digits, full profile, seed 0, test fraction 0.2) therefore loads
``qbench/model/reference/digits-full.keras``, trained once with the recipe
recorded next to it.  It is used only when the session's dataset split has
the fingerprint it was trained on (a different seed or test fraction would
put its training images in the test split); ``--qbench-train`` trains from
scratch instead.

Regenerate it (about 2 minutes on 2 cores), then re-record the accuracy
baseline (README, "Regression gate")::

    qbench retrain-reference
    pytest benchmarks --qbench-portable-save
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qbench.core.fsutil import file_hash

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REGENERATE = "qbench retrain-reference"


@dataclass(frozen=True)
class Reference:
    path: Path
    key: str  # content hash: names the variants derived from it
    meta: dict


def _meta_path(dataset: str, profile: str) -> Path:
    return REFERENCE_DIR / f"{dataset}-{profile}.json"


def committed_reference(settings, dataset, progress: Callable[[str], None] = lambda _m: None) -> Reference | None:
    """The committed model for this session, or ``None`` (train one) with a line saying why."""
    if settings.model_path is not None or settings.train:
        return None
    meta_path = _meta_path(settings.dataset, settings.profile.name)
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    path = REFERENCE_DIR / meta["file"]
    if meta["fingerprint"] != dataset.fingerprint():
        progress(
            f"the committed reference model {path.name} was trained on a different split (seed {meta['seed']}, "
            f"test fraction {meta['test_fraction']}); training a model for this one"
        )
        return None
    if not path.is_file() or file_hash(path) != meta["file_hash"]:
        progress(f"the committed reference model {path} is missing or altered (hash differs); training one instead")
        return None
    return Reference(path, "ref-" + meta["file_hash"], meta)
