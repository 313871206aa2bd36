"""``qbench retrain-reference``: train the default model with its recipe and store it as the committed reference.

Kept apart from :mod:`qbench.model.reference` (which only finds and checks the
committed model) so that loading the model never imports the trainer.
"""

from __future__ import annotations

import shutil
import sys

from qbench.core.fsutil import atomic_path, atomic_write_json, file_hash
from qbench.model.reference import REFERENCE_DIR, REGENERATE, _meta_path


def regenerate(argv: list[str] | None = None) -> int:
    """Train the default model with its recipe and commit-ready copy it into ``qbench/model/reference``."""
    import tempfile

    import keras
    import tensorflow as tf

    from qbench.config import make_settings
    from qbench.model.datasets import load_session_dataset
    from qbench.model.under_test import prepare_model

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


main = regenerate  # qbench retrain-reference


if __name__ == "__main__":
    sys.exit(regenerate(sys.argv[1:]))
