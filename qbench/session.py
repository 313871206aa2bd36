"""One benchmark session: dataset -> model -> variants -> runners -> evaluations -> latencies.

Everything is built lazily and at most once; the pytest plugin exposes it as
session-scoped fixtures, and it can be driven directly from Python too.

With ``isolate`` (the default) nothing is built or run in this process:
artifacts are built by ``python -m qbench.prepare`` children, and each
variant is loaded, evaluated and timed in a worker of its own
(:mod:`qbench.isolation`).  A variant whose process crashes is remembered
as failed; its later steps fail at once with the same line, and every other
variant carries on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qbench import backends
from qbench.config import Settings
from qbench.datasets import Dataset, load_session_dataset
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
    failure: str | None = None  # "crashed during accuracy (SIGABRT, signal 6)" and the like


class QBenchSession:
    """Lazily builds, loads and measures everything for one run."""

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
        self._latency_samples: dict[str, np.ndarray] | None = None
        self.failures: dict[str, QBenchError] = {}
        self.results: dict[str, VariantResult] = {}
        self.references: dict[str, dict] = {}  # latencies that are not variants (e.g. Keras predict())

    # ---------------------------------------------------------------- data
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            from qbench.model import image_size_for

            size = image_size_for(self.settings)
            t0 = time.perf_counter()
            ds = load_session_dataset(self.settings, size, self.progress)
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
            from qbench.model import model_key, prepare_model, trained_model_path

            s = self.settings
            if self.isolate and s.model_path is None and not trained_model_path(s, model_key(s, self.dataset)).is_file():
                from qbench.prepare import prepare_in_subprocess

                prepare_in_subprocess(s, self.dataset.fingerprint(), self.progress)
            self._model_info = prepare_model(s, self.dataset, self.progress)
        return self._model_info

    @property
    def builder(self):
        if self._builder is None:
            from qbench.build import VariantBuilder

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
        reason = backends.get(variant).unavailable()
        if reason:
            raise QBenchError(f"{variant} cannot run here: {reason}", fatal=False)
        if variant in self.failures:
            raise self.failures[variant]

    def _fail(self, variant: str, error: QBenchError) -> QBenchError:
        """Remember that ``variant`` failed (its later steps fail with the same line)."""
        from qbench.isolation import WorkerCrash

        self.failures.setdefault(variant, error)
        res = self.results.setdefault(variant, VariantResult(variant))
        if res.failure is None:
            res.failure = f"crashed during {error.step} ({error.how})" if isinstance(error, WorkerCrash) else str(error)
        return error

    def artifact(self, variant: str):
        self.check_variant(variant)
        if variant not in self._artifacts:
            parent = backends.get(variant).derived_from_variant
            if parent is not None and parent in self.failures:
                raise self._fail(variant, QBenchError(f"{variant}: not built, because {parent} failed", fatal=False))
            try:
                if self.isolate and not self.builder.path_for(variant).is_file():
                    from qbench.prepare import prepare_in_subprocess

                    prepare_in_subprocess(self.settings, self.dataset.fingerprint(), self.progress, (variant,))
                self._artifacts[variant] = self.builder.build(variant)
            except QBenchError as exc:
                if exc.fatal:
                    raise
                raise self._fail(variant, exc) from None
            self.results.setdefault(variant, VariantResult(variant)).size_bytes = self._artifacts[variant].size_bytes
        return self._artifacts[variant]

    def _load(self, variant: str, options: dict):
        art = self.artifact(variant)
        if not self.isolate:
            return backends.get(variant).load(art.path, art.meta, self.settings.threads, **options)
        from qbench.isolation import start_remote_runner

        inputs = {
            "settings": self.settings,
            "image_size": self.dataset.image_size,
            "preprocess": self.model_info.preprocess,
            "fingerprint": self.dataset.fingerprint(),
        }
        runner = start_remote_runner(variant, art.path, art.meta, self.settings.threads, options, inputs)
        if not options:  # a crash in any later step marks the variant failed
            runner.worker.on_crash = lambda crash: self._fail(variant, crash)
        return runner

    def runner(self, variant: str, **options):
        """The variant loaded and ready (in its worker when isolated); ``options`` go to ``Variant.load``."""
        key = (variant, tuple(sorted(options.items())))
        if key not in self._runners:
            from qbench.isolation import WorkerCrash

            try:
                try:
                    runner = self._load(variant, options)
                except WorkerCrash:
                    raise
                except QBenchError as exc:
                    if not self._artifacts.get(variant) or not self._artifacts[variant].cached or options:
                        raise
                    self.progress(f"cached {variant} artifact unusable ({exc}); rebuilding")
                    self.builder.discard(variant)
                    self._artifacts.pop(variant)
                    runner = self._load(variant, options)
            except QBenchError as exc:
                if exc.fatal:
                    raise
                if not options:  # an auxiliary runner's failure is the caller's to judge
                    raise self._fail(variant, exc) from None
                raise
            self._runners[key] = runner
        return self._runners[key]

    def evaluation(self, variant: str) -> Evaluation:
        if variant not in self._evaluations:
            runner = self.runner(variant)
            _, y = self.dataset.test()
            t0 = time.perf_counter()
            try:
                if self.isolate:
                    with runner.during("accuracy"):
                        scores = runner.evaluate()
                else:
                    scores = runner.predict_many(self.test_inputs()[0])
            except QBenchError as exc:
                raise self._fail(variant, exc) from None
            seconds = time.perf_counter() - t0
            metrics = classification_metrics(y, np.argmax(scores, axis=1), self.dataset.num_classes)
            ev = Evaluation(variant, y, scores, metrics, seconds)
            self._evaluations[variant] = ev
            res = self.results.setdefault(variant, VariantResult(variant))
            res.accuracy, res.metrics = ev.accuracy, metrics
            self.progress(f"{variant}: accuracy {ev.accuracy:.4f} on {len(y)} test images ({seconds:.1f}s)")
        return self._evaluations[variant]

    # ------------------------------------------------------------- latency
    def _timer(self, variant: str, method: str = "predict"):
        runner = self.runner(variant)
        if self.isolate:

            def timed(calls: int):
                with runner.during("latency"):
                    return runner.time(calls, method)

            return timed
        from qbench.latency import time_calls

        sample = np.ascontiguousarray(self.test_inputs()[0][:1])
        return lambda calls: time_calls(getattr(runner, method), sample, calls)

    def latency_samples(self, variant: str, max_time: float = 2.0, min_rounds: int = 5) -> np.ndarray:
        """Per-call seconds for ``variant``, from one interleaved campaign over every selected variant.

        The first request runs the campaign for all selected variants that
        load (each evaluated first, which also warms it up); later requests
        read its results.
        """
        from qbench.latency import interleaved_samples

        self.check_variant(variant)
        if self._latency_samples is None:
            timers = {}
            for name in self.settings.variants:
                try:
                    self.evaluation(name)
                    timers[name] = self._timer(name)
                except QBenchError as exc:
                    if exc.fatal:
                        raise
            self.progress(f"latency: timing {', '.join(timers)} in interleaved rounds, about {max_time:g}s each")
            self._latency_samples = interleaved_samples(
                timers, max_time, min_rounds, on_error=lambda name, exc: self._fail(name, exc), progress=self.progress
            )
        if variant not in self._latency_samples:
            raise self.failures.get(variant) or QBenchError(f"{variant}: no latency samples", fatal=False)
        return self._latency_samples[variant]

    def reference_samples(self, variant: str, method: str, calls: int) -> np.ndarray:
        """Per-call seconds of a runner's non-default call (e.g. Keras ``predict()``), not interleaved."""
        timer = self._timer(variant, method)
        timer(1)  # build whatever the call builds on first use
        return np.asarray(timer(calls))

    def record_reference(self, name: str, stats: dict) -> None:
        self.references[name] = dict(stats)

    def record_latency(self, variant: str, stats: dict) -> None:
        self.results.setdefault(variant, VariantResult(variant)).latency = dict(stats)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()

    # ------------------------------------------------------------ summary
    def environment(self) -> dict:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        info = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "threads": self.settings.threads,
            "profile": self.settings.profile.name,
            "dataset": self.settings.dataset,
            "seed": self.settings.seed,
            "isolation": "one worker process per variant" if self.isolate else "in-process",
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
        for dist in ("tensorflow", "keras", "ai-edge-litert", "apache-tvm"):
            with contextlib.suppress(PackageNotFoundError):
                info[f"{dist.replace('-', '_')}_version"] = version(dist)
        return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
