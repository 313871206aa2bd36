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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qbench import backends
from qbench.backends.identity import HARNESS_FLOOR
from qbench.base import TWIN_SUFFIX, is_twin, twin
from qbench.config import Settings
from qbench.datasets import Dataset, load_session_dataset
from qbench.errors import QBenchError
from qbench.inject import Injections, corrupt_predictions
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


# The session and each build child resolve the model and dataset again; where they came from is said once.
_SAY_ONCE = ("using the committed reference model", "using cached model", "using cached decoded Pet images")


def _say_once(progress: Progress) -> Progress:
    said: set[str] = set()

    def say(message: str) -> None:
        if message.startswith(_SAY_ONCE):
            if message in said:
                return
            said.add(message)
        progress(message)

    return say


def _measured(name: str) -> bool:
    """A campaign entry that is one of this run's variants (not the harness floor, not a base twin)."""
    return name != HARNESS_FLOOR and not is_twin(name)


class QBenchSession:
    """Lazily builds, loads and measures everything for one run."""

    def __init__(
        self,
        settings: Settings,
        progress: Progress | None = None,
        isolate: bool = True,
        announce_dataset: bool = True,
        injections: Injections | None = None,
        base=None,
    ):
        self.settings = settings
        self.base = base  # qbench.base.BaseTwins: the same-job base, measured beside every variant
        self.injections = injections or Injections()
        self.isolate = isolate
        self.announce_dataset = announce_dataset
        self.progress: Progress = _say_once(progress or (lambda m: None))
        self._dataset: Dataset | None = None
        self._model_info = None
        self._inputs_file: tuple[str, int] | None = None
        self.calibration_rows: list[dict] | None = None  # the calibration study, once run
        self.layer_error_rows: dict[str, list[dict]] = {}  # variant -> qbench.layer_error rows
        self._builder = None
        self._artifacts: dict = {}
        self._runners: dict = {}
        self._evaluations: dict[str, Evaluation] = {}
        self._latency_blocks: list[dict[str, list[np.ndarray]]] = []  # per campaign: variant -> blocks
        self.failures: dict[str, QBenchError] = {}
        self.results: dict[str, VariantResult] = {}
        self.references: dict[str, dict] = {}  # latencies that are not variants (e.g. Keras predict())
        self.verdicts: dict[tuple[str, str], object] = {}  # (variant, check) -> qbench.gate.Verdict

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
            from qbench.model import needs_training, prepare_model

            s = self.settings
            if self.isolate and needs_training(s, self.dataset):
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
                self._artifacts[variant] = self._built(variant)
            except QBenchError as exc:
                if exc.fatal:
                    raise
                raise self._fail(variant, exc) from None
            self.results.setdefault(variant, VariantResult(variant)).size_bytes = self._artifacts[variant].size_bytes
        return self._artifacts[variant]

    def built_metadata(self) -> dict[str, dict]:
        """Variant -> its artifact's sidecar metadata, for the variants built (or loaded) so far."""
        return {name: dict(art.meta) for name, art in self._artifacts.items() if art.meta}

    def _load(self, variant: str, options: dict):
        art = self.artifact(variant)
        return self._start(variant, art.path, art.meta, options)

    def _start(self, variant: str, path, meta: dict, options: dict, track: bool = True):
        """Load an artifact (in a worker when isolated); with ``track``, a crash marks ``variant`` failed."""
        if not self.isolate:
            return backends.get(variant).load(path, meta, self.settings.threads, **options)
        from qbench.isolation import start_remote_runner

        runner = start_remote_runner(variant, path, meta, self.settings.threads, options, self.worker_inputs())
        if track and not options:  # a crash in any later step marks the variant failed
            runner.worker.on_crash = lambda crash: self._fail(variant, crash)
        return runner

    def _test_scores(self, runner) -> np.ndarray:
        if self.isolate:
            with runner.during("accuracy"):
                return runner.evaluate()
        return runner.predict_many(self.test_inputs()[0])

    def worker_inputs(self) -> dict:
        """Where a worker reads the session's test images (``start_remote_runner``).

        One ``.npy`` of the uint8 test split in the build dir, named by the
        dataset's fingerprint and written atomically once, so every worker
        reads the same images without loading the dataset again.
        """
        if self._inputs_file is None:
            from qbench.fsutil import atomic_path

            images, _ = self.dataset.test()
            path = Path(self.settings.build_dir) / "inputs" / f"test-{self.dataset.fingerprint()[:20]}.npy"
            if not path.is_file():
                with atomic_path(path) as tmp:
                    np.save(tmp, np.ascontiguousarray(images), allow_pickle=False)
            self._inputs_file = (str(path), len(images))
        path, count = self._inputs_file
        return {"path": path, "count": count, "preprocess": self.model_info.preprocess}

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
                scores = self._test_scores(runner)
            except QBenchError as exc:
                raise self._fail(variant, exc) from None
            seconds = time.perf_counter() - t0
            if variant in self.injections.error:
                scores = corrupt_predictions(scores, y, self.injections.error[variant], self.injections.seed)
                self.progress(
                    f"{variant}: injected error, {self.injections.error[variant]:.1%} of its correct predictions made wrong"
                )
            metrics = classification_metrics(y, np.argmax(scores, axis=1), self.dataset.num_classes)
            ev = Evaluation(variant, y, scores, metrics, seconds)
            self._evaluations[variant] = ev
            res = self.results.setdefault(variant, VariantResult(variant))
            res.accuracy, res.metrics = ev.accuracy, metrics
            self.progress(f"{variant}: accuracy {ev.accuracy:.4f} on {len(y)} test images ({seconds:.1f}s)")
        return self._evaluations[variant]

    # ---------------------------------------------------- calibration study
    def calibration_sets(self):
        from qbench.calibration_study import calibration_sets

        return calibration_sets(self.dataset, self.settings.study_fractions, self.settings.seed)

    def calibration_study(self) -> list[dict]:
        """The study's rows (:mod:`qbench.calibration_study`): each calibration set's model built
        (in a child when isolated), evaluated in a worker of its own, compared with ``native``."""
        if self.calibration_rows is None:
            from qbench import calibration_study as study

            self.check_variant(study.STUDY_VARIANT)
            sets = self.calibration_sets()
            missing = [c for c in sets if not self.builder.calibrated(c.indices).is_current(study.STUDY_VARIANT)]
            if self.isolate and missing:
                from qbench.prepare import prepare_in_subprocess

                prepare_in_subprocess(self.settings, self.dataset.fingerprint(), self.progress, calibration_study=True)
            artifacts = study.build_models(self.builder, sets, self.progress if not self.isolate else lambda _m: None)
            _, y = self.dataset.test()
            accuracies = []
            for cset, art in zip(sets, artifacts, strict=True):
                runner = self._start(study.STUDY_VARIANT, art.path, art.meta, {}, track=False)
                try:
                    scores = self._test_scores(runner)
                finally:
                    if self.isolate:
                        runner.close()
                accuracies.append(float(np.mean(np.argmax(scores, axis=1) == y)))
                self.progress(f"calibration study: {cset.label}, {cset.samples} samples: accuracy {accuracies[-1]:.4f}")
            native = backends.reference_name()
            reference = self.evaluation(native).accuracy if native in self.settings.variants else None
            self.calibration_rows = study.study_rows(sets, artifacts, accuracies, reference)
        return self.calibration_rows

    # ------------------------------------------------------ per-layer error
    def _built(self, variant: str):
        """``variant``'s artifact whether or not it is selected (built in a child when isolated)."""
        built_by_child = self.isolate and not self.builder.is_current(variant)
        if built_by_child:
            from qbench.prepare import prepare_in_subprocess

            prepare_in_subprocess(self.settings, self.dataset.fingerprint(), self.progress, (variant,))
        artifact = self.builder.build(variant)
        # built a moment ago by the child: a load failure is the variant's, not a stale cache's
        return replace(artifact, cached=False) if built_by_child else artifact

    def layer_errors(self, variant: str) -> list[dict]:
        """Each activation of ``variant`` (a full-integer ``.tflite``) against ``tflite-fp32``'s, on the
        first test images (:mod:`qbench.layer_error`); LiteRT without delegates, one thread."""
        if variant not in self.layer_error_rows:
            from qbench.layer_error import FLOAT_VARIANT, IMAGES, layer_errors

            quantized = self.artifact(variant)
            reference = self._built(FLOAT_VARIANT)
            self.progress(f"per-layer error: {variant} against {FLOAT_VARIANT} on {IMAGES} test images")
            self.layer_error_rows[variant] = layer_errors(reference.path, quantized.path, self.test_inputs()[0][:IMAGES])
        return self.layer_error_rows[variant]

    # ------------------------------------------------------------- latency
    def _timer(self, variant: str, method: str = "phases", runner=None):
        runner = runner or self.runner(variant)
        stretch = self.injections.slowdown.get(variant, 1.0)
        if self.isolate:

            def timed(calls: int):
                with runner.during("latency"):
                    return runner.time(calls, method, stretch)

            return timed
        from qbench.latency import time_method

        sample = np.ascontiguousarray(self.test_inputs()[0][:1])
        return lambda calls: time_method(runner, method, sample, calls, stretch)

    def latency_samples(self, variant: str, max_time: float = 2.0, min_rounds: int = 5) -> np.ndarray:
        """Per-call seconds for ``variant`` (all its blocks, see :meth:`latency_blocks`)."""
        return np.concatenate(self.latency_blocks(variant, max_time, min_rounds))

    def latency_blocks(
        self, variant: str, max_time: float = 2.0, min_rounds: int = 5, campaign: int = 0, phase: str = "end_to_end"
    ) -> list[np.ndarray]:
        """Per-call seconds for ``variant``, one block per round of an interleaved campaign over every selected variant.

        ``phase`` picks the whole call (``end_to_end``) or the runtime alone
        (``invoke``), both timed on the same calls (:func:`qbench.latency.time_phases`).
        The harness floor (:mod:`qbench.backends.identity`) is timed in every campaign too.

        The first request runs campaign 0 for all selected variants that load
        (each evaluated first, which also warms it up); later requests read
        its results.  ``campaign=1`` is a second, independent campaign (the
        gate re-measures before it calls a slowdown a regression).
        """
        from qbench.latency import interleaved_samples, phase_blocks

        if variant != HARNESS_FLOOR:
            self.check_variant(variant)
        while len(self._latency_blocks) <= campaign:
            timers = {}
            for name in self.settings.variants:
                try:
                    self.evaluation(name)
                    timers[name] = self._timer(name)
                except QBenchError as exc:
                    if exc.fatal:
                        raise
                    continue
                if self.base is not None:  # the twin right after its candidate: the rotation keeps them close in time
                    with contextlib.suppress(QBenchError):
                        timers[twin(name)] = self.base.timer(name, self.worker_inputs())
            if timers:
                timers[HARNESS_FLOOR] = self._timer(HARNESS_FLOOR, runner=self._harness_floor())
            again = " again, to confirm" if self._latency_blocks else ""
            self.progress(f"latency: timing {', '.join(timers)} in interleaved rounds{again}, about {max_time:g}s each")
            self._latency_blocks.append(
                interleaved_samples(timers, max_time, min_rounds, on_error=self._timing_failed, progress=self.progress)
            )
        blocks = self._latency_blocks[campaign]
        if variant not in blocks:
            raise self.failures.get(variant) or QBenchError(f"{variant}: no latency samples", fatal=False)
        return phase_blocks(blocks[variant], phase)

    def _timing_failed(self, name: str, exc: Exception) -> None:
        if is_twin(name):
            self.base.fail(name[: -len(TWIN_SUFFIX)], "latency", exc)
        else:
            self._fail(name, exc)

    def base_blocks(self, variant: str, max_time: float = 2.0, min_rounds: int = 5, campaign: int = 0) -> list[np.ndarray]:
        """End-to-end seconds of ``variant``'s base twin, from the same campaign (and rounds) as the variant's."""
        from qbench.latency import phase_blocks

        self.latency_blocks(variant, max_time, min_rounds, campaign)
        blocks = self._latency_blocks[campaign].get(twin(variant))
        if blocks is None:
            raise self.base.failures.get(variant) or QBenchError(f"{variant}: {self.base.label}: no latency samples", fatal=False)
        return phase_blocks(blocks, "end_to_end")

    def base_predictions(self, variant: str) -> np.ndarray:
        """The base twin's predicted labels on the test split (``--qbench-base``)."""
        return self.base.predictions(variant, self.worker_inputs(), self.dataset.fingerprint())

    def _harness_floor(self):
        """The identity runner (:mod:`qbench.backends.identity`), started like any variant's."""
        if HARNESS_FLOOR not in self._runners:
            size = self.dataset.image_size
            meta = {"input_shape": (1, size, size, 3), "classes": self.dataset.num_classes}
            self._runners[HARNESS_FLOOR] = self._start(HARNESS_FLOOR, "", meta, {})
        return self._runners[HARNESS_FLOOR]

    def harness_floor(self) -> np.ndarray | None:
        """End-to-end seconds of the harness floor in the latest campaign (``None`` if none ran)."""
        if not self._latency_blocks or HARNESS_FLOOR not in self._latency_blocks[-1]:
            return None
        return np.concatenate(self.latency_blocks(HARNESS_FLOOR, campaign=self.latest_campaign))

    def reference_samples(self, variant: str, method: str, calls: int) -> np.ndarray:
        """Per-call seconds of a runner's non-default call (e.g. Keras ``predict()``), not interleaved."""
        timer = self._timer(variant, method)
        timer(1)  # build whatever the call builds on first use
        return np.asarray(timer(calls))

    @property
    def evaluated(self) -> dict[str, Evaluation]:
        return dict(self._evaluations)

    def portable_baseline_path(self, baseline_dir):
        from qbench.portable_baseline import baseline_path

        return baseline_path(baseline_dir, self.dataset.name, self.model_info.key, self.dataset.fingerprint())

    @property
    def latest_campaign(self) -> int:
        """The campaign a run reports and stores: the re-measurement, if the gate made one.

        The gate re-measures when the first campaign looked slower; when the
        second one clears it, the first was a slow phase of the machine and must
        not become the stored baseline.
        """
        return max(0, len(self._latency_blocks) - 1)

    def campaign_sketches(self) -> dict:
        """Block sketches of every variant in the latest campaign (empty if none ran)."""
        from qbench.stats import block_sketches

        if not self._latency_blocks:
            return {}
        from qbench.latency import phase_blocks

        campaign = self._latency_blocks[-1]
        return {name: block_sketches(phase_blocks(blocks, "end_to_end")) for name, blocks in campaign.items() if _measured(name)}

    def campaign_samples(self, phase: str = "end_to_end") -> dict[str, np.ndarray]:
        """Every per-call time (seconds) of each variant in the latest campaign: the report's distributions."""
        from qbench.latency import phase_blocks

        if not self._latency_blocks:
            return {}
        campaign = self._latency_blocks[-1]
        return {name: np.concatenate(phase_blocks(b, phase)) for name, b in campaign.items() if _measured(name)}

    def record_verdict(self, verdict) -> None:
        self.verdicts[(verdict.variant, verdict.check)] = verdict

    def record_reference(self, name: str, stats: dict) -> None:
        self.references[name] = dict(stats)

    def record_latency(self, variant: str, stats: dict) -> None:
        self.results.setdefault(variant, VariantResult(variant)).latency = dict(stats)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        if self.base is not None:
            self.base.close()

    # ------------------------------------------------------------ summary
    def environment(self) -> dict:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from qbench.fingerprint import cpu_model, fingerprint, machine_id

        info = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "fingerprint": machine_id(fingerprint(self.settings.threads)),
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
            info["model_key"] = self._model_info.key
        for dist in ("tensorflow", "keras", "ai-edge-litert", "apache-tvm"):
            with contextlib.suppress(PackageNotFoundError):
                info[f"{dist.replace('-', '_')}_version"] = version(dist)
        return info
