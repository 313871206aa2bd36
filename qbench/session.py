"""One benchmark session: dataset -> model -> variants -> runners -> evaluations.

Everything is built lazily and at most once; the pytest plugin exposes it as
session-scoped fixtures, and it can be driven directly from Python too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qbench.config import Settings
from qbench.datasets import Dataset, load_dataset
from qbench.errors import QBenchError
from qbench.metrics import classification_metrics

Progress = Callable[[str], None]


@dataclass
class Evaluation:
    variant: str
    y_true: np.ndarray
    scores: np.ndarray
    metrics: dict
    seconds: float

    @property
    def y_pred(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


@dataclass
class VariantResult:
    variant: str
    accuracy: float | None = None
    metrics: dict = field(default_factory=dict)
    size_bytes: int | None = None
    latency: dict | None = None  # seconds: mean, median, min, stddev, rounds


def cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("flags") and " avx2" in line for line in fh)
    except OSError:
        return True  # not Linux: let LLVM decide


def load_session_dataset(settings: Settings, image_size: int, progress: Progress) -> Dataset:
    """The dataset exactly as a session uses it (split, then the profile's subset)."""
    s = settings
    ds = load_dataset(s.dataset, s.dataset_root, image_size, s.seed, s.test_fraction, s.build_dir / "datasets", progress)
    return ds.subset(s.profile.max_train, s.profile.max_test)


class QBenchSession:
    """Lazily builds and caches everything for one run.

    With ``isolate`` (the default), anything missing from the cache (training,
    conversion, compilation) is built by ``python -m qbench.prepare`` in a
    child process and only loaded here, so the process that times inference
    never ran ``fit()`` or a converter (see :mod:`qbench.prepare`).
    """

    def __init__(self, settings: Settings, progress: Progress | None = None, isolate: bool = True, announce_dataset: bool = True):
        self.settings = settings
        self.isolate = isolate
        self.announce_dataset = announce_dataset
        self.progress: Progress = progress or (lambda m: None)
        self._dataset: Dataset | None = None
        self._model_info = None
        self._builder = None
        self._artifacts: dict = {}
        self._runners: dict = {}
        self._evaluations: dict[str, Evaluation] = {}
        self.results: dict[str, VariantResult] = {}
        self.references: dict[str, dict] = {}  # latencies that are not variants (e.g. Keras predict())

    # ---------------------------------------------------------------- data
    def _image_size(self) -> int:
        if self.settings.model_path is not None:
            from qbench.model import peek_user_model

            size, _ = peek_user_model(self.settings.model_path)
            return size
        return self.settings.profile.image_size

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            s = self.settings
            size = self._image_size()
            t0 = time.perf_counter()
            ds = load_session_dataset(s, size, self.progress)
            if self.announce_dataset:
                self.progress(
                    f"dataset {ds.name}: {len(ds.train_idx)} train / {len(ds.test_idx)} test images, "
                    f"{ds.num_classes} classes, {size}x{size} ({time.perf_counter() - t0:.1f}s)"
                )
            self._dataset = ds
        return self._dataset

    @property
    def model_info(self):
        if self._model_info is None:
            from qbench.model import prepare_model

            if self.isolate and self._needs_preparation():
                from qbench.prepare import prepare_in_subprocess

                prepare_in_subprocess(self.settings, self.dataset.fingerprint(), self.progress)
            self._model_info = prepare_model(self.settings, self.dataset, self.progress)
        return self._model_info

    def _needs_preparation(self) -> bool:
        """Is the model or any selected variant missing from the cache?"""
        from qbench.model import ModelInfo, model_key, trained_model_path
        from qbench.variants import VariantBuilder

        s = self.settings
        key = model_key(s, self.dataset)
        if s.model_path is None and not trained_model_path(s, key).is_file():
            return True
        preprocess = s.preprocess if s.model_path is not None else "unit"
        stub = ModelInfo(s.model_path, key, self.dataset.image_size, self.dataset.num_classes, s.model_path is None, preprocess)
        builder = VariantBuilder(stub, self.dataset, s)
        wanted = [v for v in s.variants if v != "tvm-avx2-int8" or cpu_has_avx2()]
        return any(not builder.path_for(v).is_file() for v in wanted)

    @property
    def builder(self):
        if self._builder is None:
            from qbench.variants import VariantBuilder

            self._builder = VariantBuilder(self.model_info, self.dataset, self.settings, self.progress)
        return self._builder

    def test_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        from qbench.datasets import to_model_input

        images, labels = self.dataset.test()
        return to_model_input(images, self.model_info.preprocess), labels

    # ------------------------------------------------------------ variants
    def check_variant(self, variant: str) -> None:
        if variant not in self.settings.variants:
            raise QBenchError(f"variant {variant!r} is not selected (selected: {', '.join(self.settings.variants)})")
        if variant == "tvm-avx2-int8" and not cpu_has_avx2():
            raise QBenchError("this CPU has no AVX2: the tvm-avx2-int8 variant cannot run here")

    def artifact(self, variant: str):
        self.check_variant(variant)
        if variant not in self._artifacts:
            self._artifacts[variant] = self.builder.build(variant)
            self.results.setdefault(variant, VariantResult(variant)).size_bytes = self._artifacts[variant].size_bytes
        return self._artifacts[variant]

    def runner(self, variant: str):
        if variant not in self._runners:
            from qbench.runtimes import make_runner

            art = self.artifact(variant)
            try:
                runner = make_runner(variant, art.path, self.settings.threads, art.meta or None)
            except QBenchError as exc:
                if not art.cached:
                    raise
                self.progress(f"cached {variant} artifact unusable ({exc}); rebuilding")
                self.builder.discard(variant)
                self._artifacts.pop(variant)
                art = self.artifact(variant)
                runner = make_runner(variant, art.path, self.settings.threads, art.meta or None)
            self._runners[variant] = runner
        return self._runners[variant]

    def evaluation(self, variant: str) -> Evaluation:
        if variant not in self._evaluations:
            runner = self.runner(variant)
            x, y = self.test_inputs()
            t0 = time.perf_counter()
            scores = runner.predict_many(x)
            seconds = time.perf_counter() - t0
            metrics = classification_metrics(y, np.argmax(scores, axis=1), self.dataset.num_classes)
            ev = Evaluation(variant, y, scores, metrics, seconds)
            self._evaluations[variant] = ev
            res = self.results.setdefault(variant, VariantResult(variant))
            res.accuracy, res.metrics = ev.accuracy, metrics
            self.progress(f"{variant}: accuracy {ev.accuracy:.4f} on {len(y)} test images ({seconds:.1f}s)")
        return self._evaluations[variant]

    def record_reference(self, name: str, stats: dict) -> None:
        self.references[name] = dict(stats)

    def record_latency(self, variant: str, stats: dict) -> None:
        self.results.setdefault(variant, VariantResult(variant)).latency = dict(stats)

    # ------------------------------------------------------------ summary
    def environment(self) -> dict:
        import platform

        info = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "threads": self.settings.threads,
            "profile": self.settings.profile.name,
            "dataset": self.settings.dataset,
            "seed": self.settings.seed,
        }
        if self._dataset is not None:
            info.update(
                train_samples=int(len(self._dataset.train_idx)),
                test_samples=int(len(self._dataset.test_idx)),
                image_size=self._dataset.image_size,
                calibration_samples=int(min(self.settings.n_calibration, len(self._dataset.train_idx))),
                calibration_split="train",
            )
        if self._model_info is not None:
            info["model"] = str(self._model_info.path)
            info["trained_here"] = self._model_info.trained_here
        for mod in ("tensorflow", "keras", "ai_edge_litert", "tvm"):
            import sys

            m = sys.modules.get(mod)
            if m is not None:
                info[f"{mod}_version"] = getattr(m, "__version__", "?")
        return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
