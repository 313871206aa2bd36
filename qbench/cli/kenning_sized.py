"""``qbench kenning-sized DIR``: a Kenning-sized model and a Pet-shaped tree to benchmark it on.

Kenning's Pet classifier is Keras ``MobileNetV2(224x224, alpha 1.0)`` without
its top, frozen, under Dense 1024/512/128 (ReLU) and a 37-way softmax.
Its trained weights cannot be downloaded here, and latency and robustness do
not need them: random weights (seeded) give the same graph and the same
arithmetic.  Writes ``DIR/kenning.h5`` and ``DIR/pet`` (37 breeds,
``--per-class`` images each); then::

    pytest benchmarks --qbench-dataset pet --qbench-dataset-root DIR/pet \\
        --qbench-model-path DIR/kenning.h5 --qbench-calibration-samples 50

(random weights miss the accuracy floor: those tests fail, the timing does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLASSES = 37


def kenning_sized_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, include_top=False, weights=None)
    base.trainable = False
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    for units in (1024, 512, 128):
        x = keras.layers.Dense(units, activation="relu")(x)
    out = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(base.input, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qbench kenning-sized", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--per-class", type=int, default=8, help="generated images per breed (default 8: 296 images)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from qbench.core.fsutil import atomic_path
    from qbench.model.synthetic_pet import make_pet_tree, pet_breeds

    args.dir.mkdir(parents=True, exist_ok=True)
    model_path = args.dir / "kenning.h5"
    with atomic_path(model_path) as tmp:
        kenning_sized_model(args.seed).save(tmp)
    print(f"[qbench] wrote {model_path} (MobileNetV2 224x224 alpha 1.0 frozen + Dense 1024/512/128/{CLASSES}, random weights)")
    make_pet_tree(args.dir / "pet", per_class=args.per_class, size=240, seed=args.seed, breeds=pet_breeds(CLASSES))
    print(f"[qbench] wrote {args.dir / 'pet'} ({CLASSES} breeds x {args.per_class} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
