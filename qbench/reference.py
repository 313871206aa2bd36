"""The committed reference model, so every machine benchmarks the same weights.

Training MobileNetV2 from scratch is not bit-reproducible across machines
(same seed, native accuracy 0.9499 on one VM and 0.9109 on another), and an
accuracy gate cannot hold when its reference moves 4 pp.  The default
benchmark (digits, full profile, seed 0, test fraction 0.2) therefore loads
``qbench/reference/digits-full.keras``, trained once with the recipe
recorded next to it.  It is used only when the session's dataset split has
the fingerprint it was trained on (a different seed or test fraction would
put its training images in the test split); ``--qbench-train`` trains from
scratch instead.

Regenerate it (about 2 minutes on 2 cores), then re-record the accuracy
baseline (README, "Accuracy gate")::

    python -m qbench.reference
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qbench.fsutil import atomic_path, atomic_write_json, file_hash

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REGENERATE = "python -m qbench.reference"


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


def regenerate(argv: list[str] | None = None) -> int:
    """Train the default model with its recipe and commit-ready copy it into ``qbench/reference``."""
    import tempfile

    import keras
    import tensorflow as tf

    from qbench.config import make_settings
    from qbench.datasets import load_session_dataset
    from qbench.model import prepare_model

    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(build_dir=tmp, train=True)
        dataset = load_session_dataset(settings, settings.profile.image_size, print)
        info = prepare_model(settings, dataset, lambda m: print(f"[qbench] {m}", flush=True))
        target = REFERENCE_DIR / f"{settings.dataset}-{settings.profile.name}.keras"
        with atomic_path(target) as out:
            shutil.copyfile(info.path, out)
        p = settings.profile
        atomic_write_json(
            _meta_path(settings.dataset, p.name),
            {
                "file": target.name,
                "file_hash": file_hash(target),
                "dataset": settings.dataset,
                "fingerprint": dataset.fingerprint(),
                "seed": settings.seed,
                "test_fraction": settings.test_fraction,
                "train_samples": int(len(dataset.train_idx)),
                "recipe": {
                    "architecture": f"MobileNetV2 alpha {p.alpha}, {p.image_size}x{p.image_size}, weights=None, BN momentum 0.9",
                    "optimizer": f"Adam lr {p.learning_rate}",
                    "epochs": p.epochs,
                    "batch_size": p.batch_size,
                },
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "train_seconds": info.train_seconds,
                "regenerate": REGENERATE,
            },
        )
    print(f"wrote {target}; now re-record the accuracy baseline: pytest benchmarks --qbench-portable-save")
    return 0


if __name__ == "__main__":
    sys.exit(regenerate(sys.argv[1:]))
