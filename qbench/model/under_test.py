"""The MobileNetV2 classifier: build, train (cached), or load a user's model."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qbench.core.errors import QBenchError
from qbench.core.fsutil import atomic_path, atomic_write_json, file_hash, file_lock, sha256_of, stable_hash
from qbench.model.datasets import Dataset, to_model_input
from qbench.model.keras_io import io_shape_from_config, load_keras_model, model_io_shape

if TYPE_CHECKING:  # types only: the settings sit above the model (import-linter layers)
    from qbench.config import Profile, Settings

Progress = Callable[[str], None]
TRAINING_RECIPE_VERSION = 1


@dataclass
class ModelInfo:
    path: Path  # the saved Keras model (no optimizer state)
    key: str  # content key used to name derived artifacts
    image_size: int
    num_classes: int
    trained_here: bool
    preprocess: str
    train_seconds: float | None = None


def _keras():
    import keras

    return keras


def build_mobilenetv2(
    num_classes: int, image_size: int, alpha: float = 0.35, bn_momentum: float = 0.9, last_block: int | None = None
):
    """MobileNetV2 (random init) taking [0, 1] RGB input.

    ``last_block``: only the stem and the inverted residual blocks up to that
    block's residual add, then average pooling (the smoke profile: the same
    kinds of layer, a third of them, so CI trains, converts and compiles in a
    third of the time).

    The [0, 1] -> [-1, 1] rescale is part of the graph, so every variant
    (including the int8 ones) sees the same input contract.  BatchNorm
    momentum is lowered from 0.999 to 0.9: with ``weights=None`` and a small
    dataset the moving statistics otherwise never converge and inference
    accuracy collapses while training accuracy looks fine.
    """
    keras = _keras()
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(2.0, -1.0, name="to_symmetric")(inputs)
    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    if last_block is not None:
        cut = base.get_layer(f"block_{last_block}_add").output
        base = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(cut), name=f"mobilenetv2_to_block_{last_block}")
    x = base(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"mobilenetv2_{alpha}_{image_size}")


def training_key(dataset: Dataset, profile: Profile, seed: int) -> str:
    """The trained model's cache key; the versions come from package metadata, the same strings as
    ``tf.__version__`` and ``keras.__version__``, so that a run whose model is cached never imports TensorFlow
    in the pytest process (5-6 s of every run, measured)."""
    return stable_hash(
        "train",
        TRAINING_RECIPE_VERSION,
        dataset.fingerprint(),
        [profile.image_size, profile.alpha, profile.epochs, profile.batch_size, profile.learning_rate]
        + ([] if profile.last_block is None else [profile.last_block]),
        seed,
        version("tensorflow"),
        version("keras"),
    )


def train_model(dataset: Dataset, profile: Profile, seed: int, out_path: Path, progress: Progress) -> float:
    """Train on the train split and save (atomically, without optimizer state). Returns seconds."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = build_mobilenetv2(dataset.num_classes, dataset.image_size, profile.alpha, last_block=profile.last_block)
    model.compile(
        optimizer=keras.optimizers.Adam(profile.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = dataset.train()
    x = to_model_input(x, "unit")

    class _Report(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress(
                f"epoch {epoch + 1}/{profile.epochs}: loss {logs.get('loss', float('nan')):.3f}, "
                f"train accuracy {logs.get('accuracy', float('nan')):.3f} "
                f"({time.perf_counter() - self.t0:.0f}s)"
            )

    progress(
        f"training MobileNetV2 (alpha {profile.alpha}, {dataset.image_size}x{dataset.image_size}"
        f"{'' if profile.last_block is None else f', up to block {profile.last_block}'}) on "
        f"{len(x)} {dataset.name} images for {profile.epochs} epochs"
    )
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=profile.batch_size, epochs=profile.epochs, shuffle=True, verbose=0, callbacks=[_Report()])
    seconds = time.perf_counter() - t0
    # Save a clean copy: same weights, no optimizer slots (they would triple the
    # "native" size and make the size-reduction column meaningless).
    clean = build_mobilenetv2(dataset.num_classes, dataset.image_size, profile.alpha, last_block=profile.last_block)
    clean.set_weights(model.get_weights())
    with atomic_path(out_path) as tmp:
        clean.save(tmp)
    # Drop the training graph, optimizer and their buffers before anything is timed.
    del model, clean
    keras.backend.clear_session(free_memory=True)
    gc.collect()
    return seconds


def peek_user_model(path: Path) -> tuple[int, int]:
    """(image_size, num_classes) of a user's model: from its config where that states them, else by loading it."""
    return io_shape_from_config(path) or model_io_shape(load_keras_model(path))


def image_size_for(settings: Settings) -> int:
    """The input size the session's dataset is loaded at: the user model's, or the profile's."""
    if settings.model_path is not None:
        return peek_user_model(settings.model_path)[0]
    return settings.profile.image_size


def model_key(settings: Settings, dataset: Dataset) -> str:
    """Cache key of the model under test (known before the model exists): where a trained one is kept."""
    if settings.model_path is not None:
        return content_key(settings.model_path, settings.preprocess)
    return training_key(dataset, settings.profile, settings.seed)


def content_key(path: Path, preprocess: str) -> str:
    """What names a model file's variants: its bytes and how inputs are scaled.  A model this code trained and the
    same file given as ``--qbench-model-path`` (or ``--qbench-base-model``) share their variants."""
    return stable_hash("user", file_hash(path), preprocess)


def needs_training(settings: Settings, dataset: Dataset) -> bool:
    """True when :func:`prepare_model` would train (no user model, no usable reference, nothing cached)."""
    from qbench.model.reference import committed_reference

    if settings.model_path is not None or committed_reference(settings, dataset) is not None:
        return False
    path = trained_model_path(settings, model_key(settings, dataset))
    return not path.is_file() or _record_mismatch(path)[1] is not None


def trained_model_path(settings: Settings, key: str) -> Path:
    return settings.build_dir / "models" / key / "model.keras"


def prepare_model(settings: Settings, dataset: Dataset, progress: Progress) -> ModelInfo:
    """Return the model under test: the user's (validated), the committed reference, or a cached/trained MobileNetV2."""
    if settings.model_path is not None:
        size, classes = peek_user_model(settings.model_path)
        if classes != dataset.num_classes:
            raise QBenchError(
                f"model {settings.model_path} predicts {classes} classes but the {dataset.name} dataset has {dataset.num_classes}"
            )
        if size != dataset.image_size:
            raise QBenchError(
                f"model input is {size}x{size} but the dataset was loaded at {dataset.image_size}x{dataset.image_size}"
            )
        return ModelInfo(
            path=settings.model_path,
            key=model_key(settings, dataset),
            image_size=size,
            num_classes=classes,
            trained_here=False,
            preprocess=settings.preprocess,
        )

    from qbench.model.reference import committed_reference

    ref = committed_reference(settings, dataset, progress)
    if ref is not None:
        progress(f"using the committed reference model {ref.path.name} (--qbench-train trains one from scratch)")
        return ModelInfo(ref.path, ref.key, dataset.image_size, dataset.num_classes, False, "unit", ref.meta.get("train_seconds"))
    key = model_key(settings, dataset)
    path = trained_model_path(settings, key)
    cached = _cached_model(path, dataset, progress, quiet=True)
    if cached is not None:
        return cached
    # a second run training the same model waits here, then uses the first run's file
    with file_lock(path.with_name("model.lock"), lambda: progress(f"waiting for another run that is training {path}")):
        cached = _cached_model(path, dataset, progress)
        if cached is not None:
            return cached
        seconds = train_model(dataset, settings.profile, settings.seed, path, progress)
        atomic_write_json(
            path.parent / "meta.json",
            {
                "dataset": dataset.name,
                "fingerprint": dataset.fingerprint(),
                "profile": settings.profile.name,
                "seed": settings.seed,
                "train_seconds": round(seconds, 2),
                "train_samples": int(len(dataset.train_idx)),
                "artifact": {"size": path.stat().st_size, "sha256": sha256_of(path)},
            },
        )
    progress(f"trained in {seconds:.0f}s, saved {path}")
    return ModelInfo(path, content_key(path, "unit"), dataset.image_size, dataset.num_classes, True, "unit", seconds)


def _record_mismatch(path: Path) -> tuple[dict, str | None]:
    """``meta.json`` beside the trained model, and why the model does not match its size/sha256 record (``None``: it does)."""
    try:
        meta = json.loads((path.parent / "meta.json").read_text())
        record = meta["artifact"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}, "size/sha256: no readable record in meta.json"
    if path.stat().st_size != record.get("size"):
        return meta, f"size/sha256: {path.stat().st_size} bytes, recorded {record.get('size')}"
    if sha256_of(path) != record.get("sha256"):
        return meta, "size/sha256: same size, other sha256"
    return meta, None


def _cached_model(path: Path, dataset: Dataset, progress: Progress, quiet: bool = False) -> ModelInfo | None:
    """The trained model in the cache if it matches its record (size, sha256); else ``None``.

    ``quiet``: only look (outside the lock, where another run may be writing it); otherwise say why not in one line.
    """
    if not path.is_file():
        return None
    # The record (size and sha256 of the file this code saved) decides; loading the file here as well would
    # import TensorFlow into the pytest process for nothing (3 s a run): the workers load it.
    meta, why = _record_mismatch(path)
    if why is not None:
        if not quiet:
            progress(f"model: cached model {path} does not match its record ({why}); training again")
        return None
    progress(f"using cached model {path}")
    key = content_key(path, "unit")
    return ModelInfo(path, key, dataset.image_size, dataset.num_classes, True, "unit", meta.get("train_seconds"))


def keras_predict_scores(model, images: np.ndarray, preprocess: str, batch_size: int = 64) -> np.ndarray:
    """Batched reference predictions (used for sanity checks, never for timing)."""
    x = to_model_input(images, preprocess)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
