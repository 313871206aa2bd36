"""pytest plugin: options, session fixtures, variant parametrization, summary table.

Loaded from the top-level ``conftest.py`` (``pytest_plugins = ["qbench.plugin"]``).
"""

from __future__ import annotations

import os
import sys

import pytest

from qbench.config import Settings, add_ini_keys, add_options, ini_getter, ini_message, settings_from_options
from qbench.core.errors import QBenchError

SETTINGS_KEY = pytest.StashKey[Settings]()
GATE_KEY = pytest.StashKey[object]()
MACHINE_KEY = pytest.StashKey[str]()
SESSION_KEY = pytest.StashKey[object]()
FATAL_KEY = pytest.StashKey[str]()
BASE_KEY = pytest.StashKey[object]()
REPORTED_KEY = pytest.StashKey[dict]()  # a failure's one line -> the test that reported it first
FLEET_KEY = pytest.StashKey[tuple]()  # (scheduler address, timeout) of --qbench-fleet
FLEET_RESULT_KEY = pytest.StashKey[dict]()  # the merged fleet summary


def _all_options():
    from qbench.config import OPTIONS
    from qbench.fleet.options import FLEET_OPTIONS
    from qbench.gate.verdicts import GATE_OPTIONS

    return [*OPTIONS, *GATE_OPTIONS, *FLEET_OPTIONS]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option on the command line (``--qbench-*``) and in the ini file (``qbench_*`` keys of
    ``[tool.pytest.ini_options]`` or ``pytest.ini``); the command line wins."""
    g = parser.getgroup("qbench", "qbench model quantization benchmarks")
    add_options(g.addoption, "--qbench-", _all_options(), defaults=False)
    add_ini_keys(parser.addini, _all_options())


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config.addinivalue_line("markers", "qbench_variants(*names): run this variant-parametrized test only for these variants")
    config.addinivalue_line(
        "markers", "qbench_variants_where(predicate): run it only for variants whose registry record satisfies predicate(Variant)"
    )
    from qbench.gate import fingerprint
    from qbench.gate.verdicts import gate_settings

    def from_cli(name: str):
        return config.getoption(f"qbench_{name.replace('-', '_')}")

    from qbench.gate.base import resolve

    options = _all_options()
    option = ini_getter(options, from_cli, config.getini, config.inipath)
    try:
        settings = settings_from_options(option)
        gate = config.stash[GATE_KEY] = gate_settings(option, settings.variants, settings.seed)
        config.stash[BASE_KEY] = resolve(gate.base, gate.base_model, config.invocation_params.dir)
        if option("fleet"):
            timeout = float(option("fleet-timeout") or 3600.0)
            if timeout <= 0:
                raise QBenchError(f"--qbench-fleet-timeout must be above 0 seconds, got {timeout:g}")
            config.stash[FLEET_KEY] = (option("fleet"), timeout)
    except QBenchError as exc:
        raise pytest.UsageError(f"qbench: {ini_message(str(exc), options, from_cli, config.getini, config.inipath)}") from None
    config.stash[SETTINGS_KEY] = settings
    # before pytest-benchmark's own (trylast) configure builds its storage and loads the compared run
    config.stash[MACHINE_KEY] = fingerprint.install(settings.threads)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """The fingerprint a stored run is filed under (threads included) goes into its machine info."""
    from qbench.gate import fingerprint

    settings = config.stash.get(SETTINGS_KEY, None)
    machine_info["qbench"] = fingerprint.fingerprint(settings.threads if settings else None)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    from qbench.gate.report import contain_benchmark_compare_fail, store_runs_atomically

    contain_benchmark_compare_fail(session.config)
    store_runs_atomically(session.config)


def make_progress(config: pytest.Config):
    """Progress lines that reach the terminal even while pytest captures output."""

    def progress(message: str) -> None:
        line = f"[qbench] {message}"
        tr = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        if tr is None:
            print(line, file=sys.stderr, flush=True)
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                tr.write_line(line)
        else:
            tr.write_line(line)

    return progress


def get_session(config: pytest.Config):
    from qbench.session import QBenchSession

    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        settings, progress, spec = config.stash[SETTINGS_KEY], make_progress(config), config.stash[BASE_KEY]
        base = None
        if spec is not None:
            from qbench.gate.base import BaseTwins

            base = BaseTwins(spec, settings, progress)
        session = QBenchSession(settings, progress, injections=config.stash[GATE_KEY].injections, base=base)
        config.stash[SESSION_KEY] = session
    return session


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that takes ``variant`` over the selected variants.

    The parameter is session-scoped, so the per-variant fixtures below are
    built once per variant for the whole run.
    """
    if "variant" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "variant" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return  # the test chose its own variants
    variants = list(metafunc.config.stash[SETTINGS_KEY].variants)
    marker = metafunc.definition.get_closest_marker("qbench_variants")
    if marker is not None:
        variants = [v for v in variants if v in marker.args]
    where = metafunc.definition.get_closest_marker("qbench_variants_where")
    if where is not None:
        from qbench import backends

        variants = [v for v in variants if where.args[0](backends.get(v))]
    params = [pytest.param(v, marks=pytest.mark.skip(reason=r)) if (r := _unavailable(v)) else v for v in variants]
    metafunc.parametrize("variant", params, ids=variants, scope="session")


def _unavailable(variant: str) -> str | None:
    from qbench import backends

    reason = backends.get(variant).unavailable()
    return f"{variant} cannot run here: {reason}" if reason else None


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line for the selected variants this machine cannot run (e.g. peers without their extra)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        return []
    from qbench import backends

    skipped: dict[str, list[str]] = {}
    for name in settings.variants:
        reason = backends.get(name).unavailable()
        if reason:
            skipped.setdefault(reason, []).append(name)
    return [f"qbench: skipping {', '.join(names)}: {reason}" for reason, names in skipped.items()]


@pytest.fixture(scope="session")
def qbench_settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def qbench_gate(pytestconfig: pytest.Config):
    """The gate's settings (:class:`qbench.gate.verdicts.GateSettings`)."""
    return pytestconfig.stash[GATE_KEY]


@pytest.fixture(scope="session")
def qbench(pytestconfig: pytest.Config):
    """The :class:`qbench.session.QBenchSession` (dataset, model, variants, runners)."""
    return get_session(pytestconfig)


@pytest.fixture(scope="session")
def qbench_dataset(qbench):
    """The dataset with its train/test split (:class:`qbench.model.datasets.Dataset`)."""
    return qbench.dataset


@pytest.fixture(scope="session")
def qbench_model(qbench):
    """The model under test (:class:`qbench.model.under_test.ModelInfo`), trained and cached if needed."""
    return qbench.model_info


@pytest.fixture(scope="session")
def qbench_artifact(qbench, variant):
    """The compiled variant on disk (:class:`qbench.backends.cache.Artifact`)."""
    return qbench.artifact(variant)


@pytest.fixture(scope="session")
def qbench_runner(qbench, variant, qbench_artifact):
    """The variant loaded in its worker process (a :class:`qbench.measure.isolation.RemoteRunner`)."""
    return qbench.runner(variant)


@pytest.fixture(scope="session")
def qbench_evaluation(qbench, variant, qbench_runner):
    """Predictions and metrics of the variant on the test split (:class:`qbench.session.Evaluation`)."""
    return qbench.evaluation(variant)


def record_benchmark(qbench, variant: str, benchmark, reference: bool = False, extra: dict | None = None) -> None:
    """Feed pytest-benchmark's statistics (and ``extra`` figures) into the summary (``reference``: a side note, not a row)."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is None:  # --benchmark-disable
        return
    record = qbench.record_reference if reference else qbench.record_latency
    record(
        variant,
        {
            "mean": stats.mean,
            "median": stats.median,
            "min": stats.min,
            "stddev": stats.stddev,
            "rounds": stats.rounds,
            **(extra or {}),
        },
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A qbench error is one line; a variant's failure (a crash, a build error) is reported by the first test
    that meets it, and every later test of that variant is skipped with a short reference to it."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(QBenchError):
        exc = call.excinfo.value
        report.sections = []  # the framework's import chatter is noise next to the real message
        fatal = getattr(exc, "fatal", True)
        reported = item.config.stash.setdefault(REPORTED_KEY, {})
        first = reported.get(str(exc))
        if first is not None and not fatal:
            short = str(exc).split("; last stderr:")[0]
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {short} (reported by {first})")
            return report
        reported.setdefault(str(exc), item.nodeid)
        report.longrepr = f"qbench: {exc}"
        if fatal:
            item.session.shouldstop = f"qbench: {exc}"
            item.config.stash[FATAL_KEY] = str(exc)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session):
    """``--qbench-fleet``: the benchmark runs on the fleet's machines (:mod:`qbench.fleet`), not in this process."""
    fleet = session.config.stash.get(FLEET_KEY, None)
    if fleet is None or session.testsfailed:
        return None  # a local run (or collection errors, which pytest's own loop reports)
    from qbench.fleet.driver import forwarded_args, run_fleet

    params = session.config.invocation_params
    args, files = forwarded_args(list(params.args), params.dir, session.config.rootpath)
    try:
        merged = run_fleet(fleet[0], fleet[1], session.config.stash[SETTINGS_KEY], args, files, make_progress(session.config))
    except QBenchError as exc:
        session.config.stash[FATAL_KEY] = str(exc)
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"qbench: {exc}", red=True)
        else:
            print(f"qbench: {exc}", file=sys.stderr)
        return True
    session.config.stash[FLEET_RESULT_KEY] = merged
    session.testsfailed += sum(not m["passed"] for m in merged["machines"])
    return True


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus):
    """First: a failed run stores no baseline (before pytest-benchmark saves).  Last: stop the workers."""
    from qbench.gate.report import COMPARE_FAIL_KEY, save_baselines_if_passed

    qb = session.config.stash.get(SESSION_KEY, None)
    try:
        save_baselines_if_passed(session, qb, session.config.stash[GATE_KEY], make_progress(session.config))
        return (yield)
    finally:
        if qb is not None:
            qb.close()  # stop the workers
        if session.config.stash.get(FATAL_KEY, None) is not None:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR  # bad input, same code as a bad option
        elif session.config.stash.get(COMPARE_FAIL_KEY, False) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def reference_notes(session) -> list[str]:
    notes = []
    from qbench import backends

    predict = session.references.get("keras-predict")
    native = session.results.get(backends.reference_name())
    if predict and native is not None and native.latency:
        ratio = predict["median"] / native.latency["median"]
        notes.append(
            f"Reference: Keras predict() on one image takes {predict['median'] * 1e3:.2f} ms (median), "
            f"{ratio:.1f}x the graph-mode native baseline; speed-ups measured against predict() would be inflated {ratio:.1f}x."
        )
    for key, agree in sorted(session.references.items()):
        if not key.startswith("int8-agreement"):
            continue
        notes.append(
            f"int8 agreement with LiteRT (default kernels): {agree.get('variant', 'TVM')} top-1 {agree['tvm_agree']:.1%}, "
            f"mean max output difference {agree['tvm_lsb']:.1f} LSB; LiteRT's own {agree.get('yardstick', 'reference kernels')}: "
            f"{agree['ref_agree']:.1%}, {agree['ref_lsb']:.1f} LSB."
            + (
                f" {agree.get('variant', 'TVM')} against LiteRT's reference kernels: top-1 {agree['tvm_vs_ref_agree']:.1%}, "
                f"{agree['tvm_vs_ref_lsb']:.2f} LSB."
                if "tvm_vs_ref_agree" in agree and agree.get("yardstick", "reference kernels") == "reference kernels"
                else ""
            )
        )
    tuned = {name: meta["tuning"] for name, meta in session.built_metadata().items() if "tuning" in meta}
    if tuned:
        notes.append(
            "TVM kernels with tuned schedules: "
            + ", ".join(f"{name} {info['tuned_kernels']}" for name, info in sorted(tuned.items()))
            + " (from "
            + (", ".join(sorted({d for info in tuned.values() for d in info["databases"]})) or "no tuning database")
            + "); the others take the default schedule. `qbench tune` tunes this model for this CPU."
        )
    return notes


def _fleet_summary(terminalreporter, merged: dict) -> None:
    from qbench.fleet.merged_report import machine_line, render_markdown

    terminalreporter.section("qbench fleet summary")
    for line in render_markdown(merged).splitlines():
        terminalreporter.write_line(line)
    for m in merged["machines"]:
        bad = not m["passed"]
        terminalreporter.write_line(f"qbench fleet: {machine_line(m)}", red=bad, green=not bad)
    terminalreporter.write_line(f"fleet report (and each machine's own) written to {merged['path']}/index.html")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    merged = config.stash.get(FLEET_RESULT_KEY, None)
    if merged is not None:
        _fleet_summary(terminalreporter, merged)
        return
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not any(r.accuracy is not None or r.latency or r.failure for r in session.results.values()):
        return  # nothing measured (e.g. only spec tests ran): keep the last full report
    from qbench.report.tables import harness_floor_figures, harness_floor_note, render_markdown, summarize, write_reports

    session.let_workers_go()  # nothing is measured from here on: their exits overlap the report's writing
    rows = summarize(session.results)
    floor = harness_floor_figures(session.campaigns.floor())
    notes = [n for n in [harness_floor_note(floor), *reference_notes(session)] if n]
    terminalreporter.section("qbench summary")
    from qbench import backends

    if backends.reference_name() not in session.results:
        terminalreporter.write_line(f"({backends.reference_name()} was not measured in this run: ratios are n/a)")
    for line in render_markdown(rows).splitlines():
        terminalreporter.write_line(line)
    for note in notes:
        terminalreporter.write_line(note)
    from qbench.report.tables import COSTS_NOTE, render_costs
    from qbench.report.throughput_table import THROUGHPUT_NOTE, render_throughput

    for table, note in ((render_costs(rows), COSTS_NOTE), (render_throughput(rows), THROUGHPUT_NOTE)):
        for line in table.splitlines() + ([note] if table else []):
            terminalreporter.write_line(line)
    from qbench.measure.selective import public
    from qbench.report.tables import study_sections

    selective = [public(sweep) for sweep in session.selective_sweeps.values()]
    for line in study_sections(session.calibration_rows, session.layer_error_rows, selective).splitlines():
        terminalreporter.write_line(line)
    for error in session.failures.values():
        terminalreporter.write_line(f"qbench: {error}", red=True)
    from qbench.gate.report import base_comparison, gate_page, gate_summary_lines, render_base_table, write_gate_json

    comparison = base_comparison(session)
    for row in rows:
        if row["variant"] in comparison:
            row["base"] = comparison[row["variant"]]
    for line in render_base_table(comparison).splitlines():
        terminalreporter.write_line(line)
    gate_lines = gate_summary_lines(session, config.stash[GATE_KEY], config.stash[MACHINE_KEY])
    for line, bad in gate_lines:
        terminalreporter.write_line(line, red=bad, green=not bad and line.startswith("qbench gate: PASS"))
    if gate_lines:
        write_gate_json(session, gate_lines[-1][0], config.stash[MACHINE_KEY])
    try:
        names = session.dataset.class_names if session._dataset is not None else None
        md, js = write_reports(
            rows,
            session.environment(),
            session.settings.reports,
            notes,
            session.references,
            names,
            floor,
            session.calibration_rows,
            session.layer_error_rows,
            selective,
        )
        page = write_page(session, rows, notes, names, gate_page(session, gate_lines))
        from qbench.report.raw import write_measurements

        write_measurements(session.settings.reports, session.evaluated, session.campaigns.samples(), session.environment())
    except OSError as exc:
        terminalreporter.write_line(f"qbench: could not write the report: {exc}", red=True)
        return
    terminalreporter.write_line(f"speed boost/size reduction relative to native; report written to {page}, {md} and {js}")


def write_page(session, rows: list[dict], notes: list[str], class_names, gate: dict | None = None):
    """index.html and its PNGs (:mod:`qbench.report.html`) from what this run measured."""
    from qbench import backends
    from qbench.measure.selective import public
    from qbench.report.html import write_html_report

    native = session.results.get(backends.reference_name())
    dataset = session.dataset if session._dataset is not None else None
    title = "qbench report" + (f": {dataset.name}, {dataset.image_size}x{dataset.image_size}" if dataset else "")
    return write_html_report(
        session.settings.reports,
        rows,
        title=title,
        notes=notes,
        environment=session.environment(),
        latency_samples_ms={k: v * 1e3 for k, v in session.campaigns.samples().items()},
        calibration=session.calibration_rows,
        reference_accuracy=native.accuracy if native is not None else None,
        layer_errors=session.layer_error_rows,
        class_names=class_names,
        gate=gate,
        selective=[public(sweep) for sweep in session.selective_sweeps.values()],
    )
