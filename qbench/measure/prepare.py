"""Build what a benchmark needs, in a process of its own: ``qbench prepare``.

Training, conversion and compilation never share a process with timing:
after an in-process ``fit()`` and TFLite conversion, TensorFlow keeps its
thread pools and a fragmented heap.  The session runs this module once for
the model and once per missing variant, so a converter or compiler that
crashes takes down only that variant's build (reported as a
:class:`qbench.measure.isolation.WorkerCrash`).  It is also a command on its own, to
warm the cache before timing::

    qbench prepare --profile full --variants all
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable

from qbench.core.errors import QBenchError, one_line

Progress = Callable[[str], None]


def prepare_in_subprocess(
    settings,
    dataset_fingerprint: str,
    progress: Progress,
    variants: tuple[str, ...] = (),
    calibration_study: bool = False,
    reverse: bool = False,
) -> dict[str, QBenchError]:
    """Build the model and ``variants`` in one child (one TensorFlow import for all); relay progress.

    ``reverse``: the child takes its variants and the study's sets last first (the second of
    :func:`prepare_together`'s children).

    Returns the variants whose build failed, each with its non-fatal
    :class:`QBenchError` (the others were built).  A child that dies while
    building a variant raises :class:`WorkerCrash` for that variant (the
    ones before it are built, the ones after it are not).
    """
    from qbench import backends
    from qbench.config import settings_to_argv
    from qbench.measure.isolation import WorkerCrash, child_env, describe_exit, stderr_tail

    cmd = [
        sys.executable,
        "-m",
        "qbench.measure.prepare",
        *settings_to_argv(settings),
        "--expect-fingerprint",
        dataset_fingerprint,
    ]
    cmd += ["--variants", ",".join(variants) if variants else "none"]
    for origin in backends.origins(variants):
        cmd += ["--import-origin", origin]
    if calibration_study:
        cmd.append("--calibration-study")
    if reverse:
        cmd.append("--reverse-order")
    error = None
    failed: dict[str, QBenchError] = {}
    current = None
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env())
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                kind, _, text = line.rstrip("\n").partition(" ")
                if kind == "@progress":
                    progress(text)
                elif kind == "@variant":
                    current = text
                elif kind == "@error":
                    error = text
                elif kind == "@failed":
                    failed[current or ""] = QBenchError(text, fatal=False)
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: do not leave a trainer running
                proc.kill()
                proc.wait()
        if error is not None:
            raise QBenchError(error)
        if rc != 0 and not (rc == 3 and failed):
            stderr.seek(0)
            tail = stderr_tail(stderr.read())
            if current is not None:
                raise WorkerCrash(current, "build", describe_exit(rc), tail)
            raise QBenchError(f"the preparation process failed ({describe_exit(rc)}): {tail}")
    return failed


def build_jobs() -> int:
    """Build children run at once: two where the run may use two CPUs, else one.

    TFLite conversion is mostly single-threaded Python (graph tracing and freezing), so a second child on the
    second core builds the other half of the list: the smoke profile's nine variants took 85 s one after another.
    No timer runs while they build: the session waits for its build children.
    """
    import os

    return min(2, len(os.sched_getaffinity(0)))


def build_in_children(session, variant: str, failures: dict, built: set) -> None:
    """Build ``variant`` in a child, together with every other selected variant the cache lacks.

    One child imports TensorFlow once for all of its variants (a child per
    variant paid 4-6 s each on a cold cache); with :func:`build_jobs` two, a
    second child takes the same list from the other end, and the build
    cache's per-artifact locks (:mod:`qbench.backends.cache`) make each
    artifact built once: a child that meets one the other is building waits
    for it and goes on.  A build that fails is that variant's failure, kept in
    ``failures``; a child that crashes takes the variant it was building down
    with it, and the rest go to another child.  The variants the children
    made are added to ``built``.  ``session``: the run's
    :class:`qbench.session.QBenchSession` (its builder, settings, dataset and
    progress).
    """
    from qbench import backends

    builder, settings = session.builder, session.settings
    while variant not in failures and not builder.is_current(variant):
        batch = [variant] + [
            v
            for v in settings.variants
            if v != variant
            and v not in failures
            and not backends.get(v).unavailable()
            and not backends.get(v).swept  # its points are built by its sweep (qbench.measure.studies.selective_sweep)
            and not builder.is_current(v)
        ]
        got, crashes = prepare_together(session.settings, session.dataset.fingerprint(), session.progress, tuple(batch))
        failures.update(got)
        for crash in crashes:  # the variants after the crashed one were not built: the loop gives them another child
            failures.setdefault(crash.variant if crash.variant in batch else variant, crash)
        built.update(v for v in batch if v not in failures and builder.is_current(v))
        if not crashes and variant not in failures and not builder.is_current(variant):
            failures[variant] = QBenchError(f"{variant}: its build left no artifact", fatal=False)
    if variant in failures:
        raise failures[variant]


def prepare_together(
    settings, dataset_fingerprint: str, progress: Progress, variants: tuple[str, ...] = (), calibration_study: bool = False
) -> tuple[dict[str, QBenchError], list]:
    """:func:`prepare_in_subprocess` in :func:`build_jobs` children at once, the second from the other end.

    Returns the failed builds and each child's :class:`qbench.measure.isolation.WorkerCrash`; any other
    error of a child is raised here once both are done.
    """
    import threading

    from qbench.measure.isolation import WorkerCrash

    failures: dict[str, QBenchError] = {}
    crashes: list[WorkerCrash] = []
    errors: list[BaseException] = []

    def child(reverse: bool) -> None:
        try:
            failures.update(prepare_in_subprocess(settings, dataset_fingerprint, progress, variants, calibration_study, reverse))
        except WorkerCrash as crash:
            crashes.append(crash)
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread below
            errors.append(exc)

    several = calibration_study or len(variants) > 1  # the study has several sets
    second = threading.Thread(target=child, args=(True,), name="qbench-build") if build_jobs() > 1 and several else None
    if second is not None:
        second.start()
    child(False)
    if second is not None:
        second.join()
    if errors:
        raise errors[0]
    return failures, crashes


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    from qbench.config import add_options

    faulthandler.enable()  # a crash in a converter leaves its Python location on stderr
    parser = argparse.ArgumentParser(prog="qbench prepare", description="Train/convert/compile into the qbench cache.")
    add_options(parser.add_argument, "--")
    parser.add_argument("--expect-fingerprint", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--import-origin", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument(
        "--manifest",
        default=None,
        help="write what was built (variant -> artifact path and metadata, model key, dataset fingerprint) to this "
        "JSON file; variants this revision does not know are listed as missing, not an error (the same-job base)",
    )
    parser.add_argument("--reverse-order", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--calibration-study",
        action="store_true",
        help="also build the calibration study's int8 models (qbench.measure.calibration_study)",
    )
    args = parser.parse_args(argv)
    child = args.expect_fingerprint is not None

    def progress(message: str) -> None:
        print(f"@progress {message}" if child else f"[qbench] {message}", flush=True)

    try:
        from qbench import backends
        from qbench.backends.cache import VariantBuilder
        from qbench.config import settings_from_options
        from qbench.model.datasets import load_session_dataset
        from qbench.model.under_test import image_size_for, prepare_model

        for origin in args.import_origin:
            backends.import_origin(origin)
        model_only = args.variants == "none"
        if model_only:
            args.variants = None
        missing = {}
        if args.manifest is not None and args.variants:
            known = set(backends.names())
            wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
            missing = {v: NOT_AT_REVISION for v in wanted if v not in known and v not in backends.groups()}
            args.variants = ",".join(v for v in wanted if v not in missing) or "all"
        settings = settings_from_options(lambda name: getattr(args, name.replace("-", "_")))
        dataset = load_session_dataset(settings, image_size_for(settings), progress if not child else lambda _m: None)
        if child and dataset.fingerprint() != args.expect_fingerprint:
            raise QBenchError("the dataset changed while the benchmark was starting (fingerprint mismatch); run again")
        model_info = prepare_model(settings, dataset, progress)
        builder = VariantBuilder(model_info, dataset, settings, progress)
        built, points = {}, {}
        order = () if model_only else settings.variants[::-1] if args.reverse_order else settings.variants
        for variant in order:
            if child:
                print(f"@variant {variant}", flush=True)  # the parent blames a crash on this variant
            reason = backends.get(variant).unavailable()
            if reason:
                progress(f"skipping {variant}: {reason}")
                missing[variant] = f"cannot run here: {reason}"
                continue
            try:
                if backends.get(variant).swept:  # one model per point; the run chooses which is the row
                    points[variant] = {str(k): builder.at_point(k).build(variant) for k in settings.sweep_ks}
                    continue
                built[variant] = builder.build(variant)
            except Exception as exc:
                message = f"{variant}: build failed: {type(exc).__name__}: {one_line(exc, 300)}"
                print(f"@failed {message}" if child else f"qbench: {message}", flush=True)
                missing[variant] = f"build failed: {type(exc).__name__}: {one_line(exc, 300)}"
        if args.calibration_study:
            from qbench.measure import calibration_study as study

            if child:
                print(f"@variant {study.STUDY_VARIANT}", flush=True)
            sets = study.calibration_sets(dataset, settings.study_fractions, settings.seed)
            study.build_models(builder, sets[::-1] if args.reverse_order else sets, progress)
        if args.manifest is not None:
            _write_manifest(args.manifest, model_info, dataset, built, missing, points)
        if child and any(why.startswith("build failed") for why in missing.values()):
            return 3  # the parent has each failure's line (@failed); the others were built
    except QBenchError as exc:
        print(f"@error {exc}" if child else f"qbench: {exc}", flush=True)
        return 3
    return 0


NOT_AT_REVISION = "not a variant at this revision"  # qbench.gate.base reads it: a variant new in the candidate


def _write_manifest(path: str, model_info, dataset, built: dict, missing: dict, points: dict) -> None:
    """What this revision built, for a run of another revision that measures it (:mod:`qbench.gate.base`);
    a swept variant's models by point (``points``: variant -> K -> artifact), the run picking one."""
    from pathlib import Path

    import qbench
    from qbench.core.fsutil import atomic_write_json

    def entry(art) -> dict:
        return {"path": str(Path(art.path).resolve()), "meta": art.meta, "size_bytes": art.size_bytes}

    atomic_write_json(
        Path(path),
        {
            "model_key": model_info.key,
            "model": str(model_info.path),
            "preprocess": model_info.preprocess,
            "dataset_fingerprint": dataset.fingerprint(),
            "qbench": str(Path(qbench.__file__).resolve().parent),
            "variants": {name: entry(art) for name, art in built.items()},
            "points": {name: {k: entry(art) for k, art in by_k.items()} for name, by_k in points.items()},
            "missing": missing,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
