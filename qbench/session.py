"""One benchmark session: dataset -> model -> variants -> runners -> evaluations -> latencies.

Everything is built lazily and at most once; the pytest plugin exposes it as
session-scoped fixtures, and it can be driven directly from Python too.

With ``isolate`` (the default) nothing is built or run in this process:
artifacts are built by ``qbench prepare`` children, and each
variant is loaded, evaluated and timed in a worker of its own
(:mod:`qbench.measure.isolation`).  A variant whose process crashes is remembered
as failed; its later steps fail at once with the same line, and every other
variant carries on.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import numpy as np

from qbench import backends
from qbench.backends.identity import HARNESS_FLOOR
from qbench.config import Settings
from qbench.core.errors import QBenchError
from qbench.core.progress import Progress, say_once
from qbench.measure.campaign import Campaigns, is_twin, twin, twin_of
from qbench.measure.inject import Injections, corrupt_predictions
from qbench.measure.results import Evaluation, VariantResult
from qbench.model.datasets import Dataset, load_session_dataset
from qbench.report.metrics import classification_metrics

# The session and each build child resolve the model and dataset again; where they came from is said once.
_SAY_ONCE = ("using the committed reference model", "using cached model", "using cached decoded Pet images")


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
        self.base = base  # qbench.gate.base.BaseTwins: the same-job base, measured beside every variant
        self.injections = injections or Injections()
        self.isolate = isolate
        self.announce_dataset = announce_dataset
        self.progress: Progress = say_once(progress or (lambda m: None), _SAY_ONCE)
        self._dataset: Dataset | None = None
        self._model_info = None
        self._inputs_file: tuple[str, int] | None = None
        self._build_failures: dict[str, QBenchError] = {}  # variant -> why its build failed (or crashed)
        self._built_this_run: set[str] = set()  # variants this run's build children made
        self.calibration_rows: list[dict] | None = None  # the calibration study, once run
        self.layer_error_rows: dict[str, list[dict]] = {}  # variant -> qbench.measure.layer_error rows
        self._builder = None
        self._artifacts: dict = {}
        self._runners: dict = {}
        self._evaluations: dict[str, Evaluation] = {}
        self._cost_samples: dict[str, list[dict]] = {}  # variant -> one dict per worker (qbench.measure.costs.sample)
        self._partners: dict[str, list] = {}  # variant -> its extra workers for concurrent streams (qbench.measure.throughput)
        self._imported: dict[str, tuple] = {}  # variant -> the (worker, baseline) its next cost sample takes, imported ahead
        self._quitting: list = []  # workers told to quit, awaited in close()
        self._throughput: dict[str, dict] | None = None
        self.selective_sweeps: dict[str, dict] = {}  # every swept variant's sweep (qbench.measure.selective), once run
        self.campaigns = Campaigns()  # the interleaved latency campaigns (qbench.measure.campaign)
        self.failures: dict[str, QBenchError] = {}
        self.results: dict[str, VariantResult] = {}
        self.references: dict[str, dict] = {}  # latencies that are not variants (e.g. Keras predict())
        self.verdicts: dict[tuple[str, str], object] = {}  # (variant, check) -> qbench.gate.verdicts.Verdict

    # ---------------------------------------------------------------- data
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            from qbench.model.under_test import image_size_for

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
            from qbench.model.under_test import needs_training, prepare_model

            s = self.settings
            if self.isolate and needs_training(s, self.dataset):
                from qbench.measure.prepare import prepare_in_subprocess

                prepare_in_subprocess(s, self.dataset.fingerprint(), self.progress)
            self._model_info = prepare_model(s, self.dataset, self.progress)
        return self._model_info

    @property
    def builder(self):
        if self._builder is None:
            from qbench.backends.cache import VariantBuilder

            self._builder = VariantBuilder(self.model_info, self.dataset, self.settings, self.progress)
        return self._builder

    def test_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        from qbench.model.datasets import to_model_input

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
        from qbench.measure.isolation import WorkerCrash

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
                swept = backends.get(variant).swept
                self._artifacts[variant] = self.selective(variant)["artifact"] if swept else self.built(variant)
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
        return self.start_runner(variant, art.path, art.meta, options, costs=not options)

    def start_runner(self, variant: str, path, meta: dict, options: dict, track: bool = True, costs: bool = False):
        """Load an artifact (in a worker when isolated); with ``track``, a crash marks ``variant`` failed;
        with ``costs``, the worker is also a sample of the variant's costs (:mod:`qbench.measure.costs`)."""
        if not self.isolate:
            return backends.get(variant).load(path, meta, self.settings.threads, **options)
        from qbench.measure.isolation import start_remote_runner

        costs = costs and self.settings.n_cost_samples > 0
        hold = self.injections.memory.get(variant, 0.0)  # --qbench-inject-memory
        inputs = self.worker_inputs()
        imported = self._imported_beside_a_cost_sample(variant) if costs else None
        runner = start_remote_runner(
            variant, path, meta, self.settings.threads, options, inputs, costs=costs, hold_mib=hold, imported=imported
        )
        if track and not options:  # a crash in any later step marks the variant failed
            runner.worker.on_crash = lambda crash: self._fail(variant, crash)
        return runner

    def _imported_beside_a_cost_sample(self, variant: str):
        """A worker for ``variant``'s own runner, its runtime imported at the same time as that of the fresh
        worker its next cost sample takes (kept in ``_imported``), when there is to be one: the two imports
        overlap instead of following each other (TensorFlow's takes 4.5 s); loads and calls stay one at a time."""
        from qbench.measure.isolation import start_imported_workers

        if self.settings.n_cost_samples < 2 or variant in self._imported:
            return None
        own, self._imported[variant] = start_imported_workers(variant, 2)
        return own

    def test_scores(self, runner) -> np.ndarray:
        if self.isolate:
            with runner.during("accuracy"):
                if getattr(runner, "costs", None) is None:
                    return runner.evaluate()
                from qbench.measure import costs

                scores, measured = costs.measure(runner)  # in the accuracy step: a crash there is its
                samples = self._cost_samples.setdefault(runner.variant, [])
                samples.append(measured)
                self.results.setdefault(runner.variant, VariantResult(runner.variant)).costs = costs.summarize(samples)
                held = self.injections.memory.get(runner.variant)
                if held:
                    self.progress(f"{runner.variant}: injected memory, {held:g} MiB held from load on")
                return scores
        return runner.predict_many(self.test_inputs()[0])

    def worker_inputs(self) -> dict:
        """Where a worker reads the session's test images (:func:`qbench.measure.isolation.test_split_file`)."""
        if self._inputs_file is None:
            from qbench.measure.isolation import test_split_file

            self._inputs_file = test_split_file(self.dataset, self.settings.build_dir)
        path, count = self._inputs_file
        return {"path": path, "count": count, "preprocess": self.model_info.preprocess}

    def runner(self, variant: str, **options):
        """The variant loaded and ready (in its worker when isolated); ``options`` go to ``Variant.load``."""
        key = (variant, tuple(sorted(options.items())))
        if key not in self._runners:
            from qbench.measure.isolation import WorkerCrash

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
                scores = self.test_scores(runner)
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

    def costs(self, variant: str) -> dict | None:
        """Load time, first call and memory over ``--qbench-cost-samples`` fresh workers (None: not measured).

        The variant's own worker is the first sample (taken when it was
        evaluated); the others are fresh workers started, measured and
        stopped one at a time, outside any latency campaign.
        """
        from qbench.measure import costs
        from qbench.measure.isolation import start_remote_runner

        wanted = self.settings.n_cost_samples if self.isolate else 0
        if wanted <= 0:
            return None
        self.evaluation(variant)
        samples = self._cost_samples.setdefault(variant, [])
        art = self.artifact(variant)
        while len(samples) < wanted:
            hold = self.injections.memory.get(variant, 0.0)
            inputs = self.worker_inputs()
            threads = self.settings.threads
            imported = self._imported.pop(variant, None)  # its runtime imported beside the variant's own worker
            runner = start_remote_runner(
                variant, art.path, art.meta, threads, {}, inputs, costs=True, hold_mib=hold, imported=imported
            )
            keep = False
            try:
                with runner.during("costs"):
                    samples.append(costs.measure(runner)[1])
                # a loaded worker the streams throughput would start again: kept, paused, until it has run
                keep = len(self._partners.get(variant, [])) < self.settings.streams - 1
            finally:
                if keep:
                    self._partners.setdefault(variant, []).append(runner)
                else:
                    runner.close()
        summary = costs.summarize(samples)
        self.results.setdefault(variant, VariantResult(variant)).costs = summary
        return summary

    def throughput(self, variant: str, max_time: float = 2.0, min_rounds: int = 5) -> dict | None:
        """Images per second by batch size and with concurrent streams (:mod:`qbench.measure.throughput`),
        measured for every selected variant at the first request (``max_time``/``min_rounds``: the latency
        campaign's budget, should batch 1 need it run); ``None``: not measured (not isolated, or no batch
        sizes and no streams asked for)."""
        if not self.isolate or not (self.settings.batches or self.settings.streams > 1):
            return None
        if self._throughput is None:
            from qbench.measure.throughput import measure

            self._throughput = measure(self, max_time, min_rounds)
            for name, figures in self._throughput.items():
                if "error" not in figures:
                    self.results.setdefault(name, VariantResult(name)).throughput = figures
        self.check_variant(variant)
        return self._throughput.get(variant)

    def stream_partners(self, variant: str, count: int) -> list:
        """``count`` more workers of ``variant`` beside its own, for concurrent streams: those the costs
        measurement kept, then fresh ones (a crash in one fails the throughput only)."""
        partners = self._partners.setdefault(variant, [])
        art = self.artifact(variant)
        while len(partners) < count:
            partners.append(self.start_runner(variant, art.path, art.meta, {}, track=False))
        return partners[:count]

    def close_stream_partners(self) -> None:
        """Tell the streams' extra workers to quit; :meth:`close` awaits them, so their exits (TensorFlow's
        takes 1.4-1.5 s) overlap the tests that follow instead of holding them up."""
        self._let_go([runner.worker for partners in self._partners.values() for runner in partners])
        self._partners.clear()

    def let_workers_go(self) -> None:
        """Tell every worker to quit (the run has measured all it will: its report is being written);
        :meth:`close` awaits them."""
        from qbench.measure.isolation import RemoteRunner

        self.close_stream_partners()
        spares = [worker for worker, _ in self._imported.values()]
        self._imported.clear()
        self._let_go([*spares, *(r.worker for r in self._runners.values() if isinstance(r, RemoteRunner))])
        self._runners = {key: r for key, r in self._runners.items() if not isinstance(r, RemoteRunner)}

    def _let_go(self, workers: list) -> None:
        from qbench.measure.isolation import ask_to_quit

        ask_to_quit(workers)
        self._quitting.extend(workers)

    def selective(self, variant: str | None = None) -> dict:
        """A selective sweep (:func:`qbench.measure.studies.selective_sweep`; ``tflite-int8-selective``'s unless
        ``variant`` names another swept variant), run once: its rows, its choice and the chosen K's artifact."""
        from qbench.measure.selective import SWEPT_VARIANT

        variant = variant or SWEPT_VARIANT
        if variant not in self.selective_sweeps:
            from qbench.measure.studies import selective_sweep

            sweep = self.selective_sweeps[variant] = selective_sweep(self, variant)
            if self.base is not None:  # the twin is the base's model at the same K
                self.base.use_point(sweep["artifact"].variant, sweep["chosen"]["k"])
        return self.selective_sweeps[variant]

    def timer(self, variant: str, runner):
        """A latency timer for ``runner`` (a worker of ``variant``, or a point of a sweep): calls -> per-call seconds."""
        return self._timer(variant, runner=runner)

    # ---------------------------------------------------- calibration study
    def calibration_sets(self):
        from qbench.measure.calibration_study import calibration_sets

        return calibration_sets(self.dataset, self.settings.study_fractions, self.settings.seed)

    def calibration_study(self) -> list[dict]:
        """The study's rows (:func:`qbench.measure.studies.calibration_study`), measured once."""
        if self.calibration_rows is None:
            from qbench.measure.studies import calibration_study

            self.calibration_rows = calibration_study(self)
        return self.calibration_rows

    # ------------------------------------------------------ per-layer error
    def built(self, variant: str):
        """``variant``'s artifact whether or not it is selected (built in a child when isolated)."""
        if self.isolate and not self.builder.is_current(variant):
            from qbench.measure.prepare import build_in_children

            build_in_children(self, variant, self._build_failures, self._built_this_run)
        artifact = self.builder.build(variant)
        # built by this run's children: a load failure is the variant's, not a stale cache's
        return replace(artifact, cached=False) if variant in self._built_this_run else artifact

    def layer_errors(self, variant: str) -> list[dict]:
        """Each activation of ``variant`` against ``tflite-fp32``'s (:func:`qbench.measure.studies.layer_errors`), once."""
        if variant not in self.layer_error_rows:
            from qbench.measure.studies import layer_errors

            self.layer_error_rows[variant] = layer_errors(self, variant)
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
        from qbench.measure.latency import time_method

        sample = np.ascontiguousarray(self.test_inputs()[0][:1])
        return lambda calls: time_method(runner, method, sample, calls, stretch)

    def latency_blocks(
        self, variant: str, max_time: float = 2.0, min_rounds: int = 5, campaign: int = 0, phase: str = "end_to_end"
    ) -> list[np.ndarray]:
        """Per-call seconds for ``variant``, one block per round of an interleaved campaign over every selected variant.

        ``phase`` picks the whole call (``end_to_end``) or the runtime alone
        (``invoke``), both timed on the same calls (:func:`qbench.measure.latency.time_phases`).
        The harness floor (:mod:`qbench.backends.identity`) and, with a same-job base, each
        variant's twin right after it are timed in every campaign too.

        The first request runs campaign 0 for all selected variants that load
        (each evaluated first, which also warms it up); later requests read
        its results.  ``campaign=1`` is a second, independent campaign (the
        gate re-measures before it calls a slowdown a regression).
        """
        if variant != HARNESS_FLOOR:
            self.check_variant(variant)
        while len(self.campaigns) <= campaign:
            self.campaigns.run(self._campaign_timers(), max_time, min_rounds, self._timing_failed, self.progress)
        blocks = self.campaigns.blocks(variant, campaign, phase)
        if blocks is None:
            raise self.failures.get(variant) or QBenchError(f"{variant}: no latency samples", fatal=False)
        return blocks

    def _campaign_timers(self) -> dict:
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
        return timers

    def _timing_failed(self, name: str, exc: Exception) -> None:
        if is_twin(name):
            self.base.fail(twin_of(name), "latency", exc)
        else:
            self._fail(name, exc)

    def base_blocks(self, variant: str, max_time: float = 2.0, min_rounds: int = 5, campaign: int = 0) -> list[np.ndarray]:
        """End-to-end seconds of ``variant``'s base twin, from the same campaign (and rounds) as the variant's."""
        self.latency_blocks(variant, max_time, min_rounds, campaign)
        blocks = self.campaigns.blocks(twin(variant), campaign)
        if blocks is None:
            raise self.base.failures.get(variant) or QBenchError(f"{variant}: {self.base.label}: no latency samples", fatal=False)
        return blocks

    def base_costs(self, variant: str) -> dict:
        """The base twin's load and peak memory in a fresh worker with the base's code (``--qbench-base``)."""
        return self.base.peak_memory(variant, self.worker_inputs(), self.settings.n_cost_samples)

    def base_predictions(self, variant: str) -> np.ndarray:
        """The base twin's predicted labels on the test split (``--qbench-base``)."""
        return self.base.predictions(variant, self.worker_inputs(), self.dataset.fingerprint())

    def _harness_floor(self):
        """The identity runner (:mod:`qbench.backends.identity`), started like any variant's."""
        if HARNESS_FLOOR not in self._runners:
            size = self.dataset.image_size
            meta = {"input_shape": (1, size, size, 3), "classes": self.dataset.num_classes}
            self._runners[HARNESS_FLOOR] = self.start_runner(HARNESS_FLOOR, "", meta, {})
        return self._runners[HARNESS_FLOOR]

    def reference_samples(self, variant: str, method: str, calls: int) -> np.ndarray:
        """Per-call seconds of a runner's non-default call (e.g. Keras ``predict()``), not interleaved."""
        timer = self._timer(variant, method)
        timer(1)  # build whatever the call builds on first use
        return np.asarray(timer(calls))

    @property
    def evaluated(self) -> dict[str, Evaluation]:
        return dict(self._evaluations)

    def portable_baseline_path(self, baseline_dir):
        from qbench.gate.stored import baseline_path

        return baseline_path(baseline_dir, self.dataset.name, self.model_info.key, self.dataset.fingerprint())

    @property
    def latest_campaign(self) -> int:
        """The campaign a run reports and stores (:attr:`qbench.measure.campaign.Campaigns.latest`)."""
        return self.campaigns.latest

    def record_verdict(self, verdict) -> None:
        self.verdicts[(verdict.variant, verdict.check)] = verdict

    def record_reference(self, name: str, stats: dict) -> None:
        self.references[name] = dict(stats)

    def record_latency(self, variant: str, stats: dict) -> None:
        self.results.setdefault(variant, VariantResult(variant)).latency = dict(stats)

    def close(self) -> None:
        from qbench.measure.isolation import close_workers

        self.let_workers_go()
        close_workers(self._quitting)  # their exits overlap
        self._quitting.clear()
        for runner in self._runners.values():  # those left run in this process
            runner.close()
        self._runners.clear()
        if self.base is not None:
            self.base.close()

    # ------------------------------------------------------------ summary
    def environment(self) -> dict:
        """What the report says this run ran on and with (:func:`qbench.report.environment.run_environment`)."""
        from qbench.gate.fingerprint import fingerprint, machine_id
        from qbench.report.environment import run_environment

        return run_environment(self, machine_id(fingerprint(self.settings.threads)))
