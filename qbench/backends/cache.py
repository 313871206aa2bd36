"""Building variant artifacts from the reference model, cached in ``build/`` and written atomically.

The builder is the context every registered ``Variant.build`` receives: it
hands out the Keras model, the train-split calibration inputs and other
variants' artifacts, and it names each artifact after everything that decides
its bytes, so a change (library version, calibration sample) rebuilds it.

A cache that CI restores between jobs, and that two runs on one machine can
share, must heal itself: each artifact's sidecar records its size and
sha256, a cached artifact is used only when it matches (a truncated TVM
``.so`` made the loader die with SIGBUS in every later run, and a flipped
byte in a ``.tflite`` was measured without a word), and builds of one
artifact by concurrent runs are serialized with a lock on its path, so the
second run waits and then uses the first run's file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbench import backends
from qbench.core.fsutil import atomic_path, atomic_write_json, file_lock, sha256_of, stable_hash

Progress = Callable[[str], None]


@dataclass
class Artifact:
    variant: str
    path: Path
    size_bytes: int
    build_seconds: float | None
    cached: bool
    meta: dict


def _quiet(_m: str) -> None:
    pass


class VariantBuilder:
    """Builds (or reuses from ``build/``) each variant's artifact for one model."""

    def __init__(self, model_info, dataset, settings, progress: Progress = _quiet):
        self.model_info = model_info
        self.dataset = dataset
        self.settings = settings
        self.progress = progress
        self.dir = settings.build_dir / "variants" / model_info.key
        self._model = None
        self._calibration: np.ndarray | None = None  # None: the session's stratified sample
        self.sweep_point = None  # a swept variant's parameter (Variant.swept), set by at_point()
        self._unswept: VariantBuilder | None = None  # at_point()'s origin: it builds the variants that are not swept

    def calibrated(self, indices: np.ndarray, subdir: str = "calibration") -> VariantBuilder:
        """A builder whose variants calibrate on ``indices`` (train-split images) instead of the
        session's calibration sample, caching into ``subdir`` (the calibration study's models)."""
        other = VariantBuilder(self.model_info, self.dataset, self.settings, self.progress)
        other.dir = self.dir / subdir
        other._model = self._model
        other._calibration = np.sort(np.asarray(indices, dtype=np.int64))
        return other

    def at_point(self, point, subdir: str = "sweep") -> VariantBuilder:
        """A builder whose swept variants build at ``point`` of their parameter (``sweep_point``), caching into
        ``subdir`` (the selective sweep's models: one per K)."""
        other = VariantBuilder(self.model_info, self.dataset, self.settings, self.progress)
        other.dir = self.dir / subdir
        other._model = self._model
        other._calibration = self._calibration
        other.sweep_point = point
        other._unswept = self
        return other

    # -- what a Variant.build may ask for -----------------------------------
    def calibration_indices(self) -> np.ndarray:
        if self._calibration is not None:
            return self._calibration
        return self.dataset.calibration_indices(self.settings.n_calibration, self.settings.seed + 1)

    def calibration_key(self) -> str:
        idx = self.calibration_indices()
        return stable_hash(
            "calib", self.dataset.fingerprint(), idx.astype(np.int64).tobytes(), self.model_info.preprocess, version("tensorflow")
        )

    def calibration_inputs(self) -> np.ndarray:
        from qbench.model.datasets import to_model_input

        return to_model_input(self.dataset.images[self.calibration_indices()], self.model_info.preprocess)

    def train_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole train split as model input and labels (for variants that fine-tune, e.g. QAT)."""
        from qbench.model.datasets import to_model_input

        images, labels = self.dataset.train()
        return to_model_input(images, self.model_info.preprocess), labels

    def train_key(self) -> str:
        return stable_hash("train", self.dataset.fingerprint(), self.model_info.preprocess, self.settings.seed)

    def keras_model(self):
        if self._model is None:
            from qbench.model.keras_io import load_keras_model

            self._model = load_keras_model(self.model_info.path)
        return self._model

    def artifact(self, name: str) -> Artifact:
        """Another variant's artifact (built if missing), for variants derived from it; a variant that is not
        swept comes from the builder a sweep's builder was made from (one ``openvino-fp32`` for every K, not
        one per K under ``sweep/``)."""
        if self._unswept is not None and not backends.get(name).swept:
            return self._unswept.artifact(name)
        return self.build(name)

    # -- naming ---------------------------------------------------------------
    def variant_key(self, name: str) -> str:
        variant = backends.get(name)
        parent = variant.derived_from_variant
        return stable_hash(name, variant.cache_key(self), self.variant_key(parent) if parent else None, length=12)

    def path_for(self, name: str) -> Path:
        return self.dir / f"{name}-{self.variant_key(name)}{backends.get(name).suffix}"

    # -- the cache's records ------------------------------------------------------
    def cached(self, name: str, heal: bool = False) -> Artifact | None:
        """The cached artifact if it is there and matches its sidecar's size and sha256, else ``None``.

        ``heal`` (only under the artifact's lock, where no other run is writing it): a mismatch is said in
        one line and the files are removed, so the build that follows replaces them.
        """
        path = self.path_for(name)
        if not path.is_file():
            return None
        meta, why = read_record(path)
        if why is not None:
            if heal:
                self.progress(f"{name}: cached artifact {path} does not match its record ({why}); rebuilding")
                self.discard(name)
            return None
        return Artifact(name, path, path.stat().st_size, meta.get("build_seconds"), True, meta)

    def is_current(self, name: str) -> bool:
        """Whether a build is needed (quietly: the builder that rebuilds says why)."""
        path = self.path_for(name)
        return path.is_file() and read_record(path)[1] is None

    # -- build ------------------------------------------------------------------
    def build(self, name: str, force: bool = False) -> Artifact:
        variant = backends.get(name)
        path = self.path_for(name)
        if not force and (art := self.cached(name)) is not None:
            return art
        # another run building the same artifact holds this lock; wait, then use its file
        with file_lock(
            path.with_name(path.name + ".lock"),
            lambda: self.progress(f"{name}: waiting for another run that is building {path.name}"),
        ):
            if not force and (art := self.cached(name, heal=True)) is not None:
                self.progress(f"{name}: using {path.name}, built by another run meanwhile")
                return art
            for stale in [*path.parent.glob(f".{path.name}.*"), *path.parent.glob(f".{sidecar(path).name}.*")]:
                stale.unlink(missing_ok=True)  # a killed build's temporary file: nobody else writes it while we hold the lock
            self.progress(f"building {name} -> {path}")
            t0 = time.perf_counter()
            with atomic_path(path) as tmp:
                meta = {"variant": name, **(variant.build(self, tmp) or {})}
            seconds = time.perf_counter() - t0
            meta["build_seconds"] = round(seconds, 3)
            meta["artifact"] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
            meta["built_by"] = {"pid": os.getpid(), "at": time.time()}
            atomic_write_json(sidecar(path), meta)
        self.progress(f"built {name} in {seconds:.1f}s ({path.stat().st_size / 1024:.0f} KiB)")
        return Artifact(name, path, path.stat().st_size, seconds, False, meta)

    def discard(self, name: str) -> None:
        path = self.path_for(name)
        for p in (path, sidecar(path)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def sidecar(path: Path) -> Path:
    """``<artifact>.json``: what the artifact was built from, its build time and its size and sha256."""
    return path.with_suffix(path.suffix + ".json")


def read_record(path: Path) -> tuple[dict, str | None]:
    """The sidecar of ``path`` and ``None`` when the file matches it; else why not (size, sha256, no record)."""
    try:
        meta = json.loads(sidecar(path).read_text(encoding="utf-8"))
        record = meta["artifact"]
        size, digest = int(record["size"]), str(record["sha256"])
    except FileNotFoundError:
        return {}, "size/sha256: no sidecar"
    except (ValueError, KeyError, TypeError):
        return {}, "size/sha256: the sidecar has no readable record (an older qbench, or cut short)"
    actual = path.stat().st_size
    if actual != size:
        return meta, f"size/sha256: {actual} bytes, recorded {size}"
    if sha256_of(path) != digest:
        return meta, "size/sha256: same size, other sha256"
    return meta, None
