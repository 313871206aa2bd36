"""The quantization studies of a run, driven through the session that holds its builds and workers.

* :func:`calibration_study`: each calibration set's int8 model built (in a
  child when isolated), evaluated in a worker of its own, compared with
  ``native`` (:mod:`qbench.measure.calibration_study` has the sets and rows);
* :func:`layer_errors`: each activation of a full-integer variant against
  ``tflite-fp32``'s on the first test images (:mod:`qbench.measure.layer_error`);
* :func:`selective_sweep`: each K's model with the K worst-quantized operators
  in float, evaluated and timed beside ``tflite-int8`` and ``tflite-fp32``,
  and the K chosen for the row (:mod:`qbench.measure.selective`).

``session`` is the run's :class:`qbench.session.QBenchSession`; these
functions use its builder, workers and dataset, and keep no state.
"""

from __future__ import annotations

import numpy as np

from qbench import backends


def calibration_study(session) -> list[dict]:
    """The study's rows, one per calibration set."""
    from qbench.measure import calibration_study as study

    session.check_variant(study.STUDY_VARIANT)
    sets = session.calibration_sets()
    missing = [c for c in sets if not session.builder.calibrated(c.indices).is_current(study.STUDY_VARIANT)]
    if session.isolate and missing:
        from qbench.measure.prepare import prepare_together

        _, crashes = prepare_together(session.settings, session.dataset.fingerprint(), session.progress, calibration_study=True)
        if crashes:
            raise crashes[0]
    artifacts = study.build_models(session.builder, sets, session.progress if not session.isolate else lambda _m: None)
    _, y = session.dataset.test()
    accuracies = []
    for cset, art in zip(sets, artifacts, strict=True):
        runner = session.start_runner(study.STUDY_VARIANT, art.path, art.meta, {}, track=False)
        try:
            scores = session.test_scores(runner)
        finally:
            if session.isolate:
                runner.close()
        accuracies.append(float(np.mean(np.argmax(scores, axis=1) == y)))
        session.progress(f"calibration study: {cset.label}, {cset.samples} samples: accuracy {accuracies[-1]:.4f}")
    native = backends.reference_name()
    reference = session.evaluation(native).accuracy if native in session.settings.variants else None
    return study.study_rows(sets, artifacts, accuracies, reference)


def layer_errors(session, variant: str) -> list[dict]:
    """Each activation of ``variant`` (a full-integer ``.tflite``) against ``tflite-fp32``'s; LiteRT without
    delegates, one thread."""
    from qbench.measure.layer_error import FLOAT_VARIANT, IMAGES
    from qbench.measure.layer_error import layer_errors as compare_layers

    quantized = session.artifact(variant)
    reference = session.built(FLOAT_VARIANT)
    session.progress(f"per-layer error: {variant} against {FLOAT_VARIANT} on {IMAGES} test images")
    return compare_layers(reference.path, quantized.path, session.test_inputs()[0][:IMAGES])


def selective_sweep(session, name: str | None = None) -> dict:
    """The sweep's rows, its choice and the chosen K's artifact (``{"rows", "chosen", "target", "artifact"}``),
    of ``tflite-int8-selective`` or another swept variant (``openvino-int8-selective``)."""
    from qbench.core.errors import QBenchError
    from qbench.measure import selective
    from qbench.measure.latency import interleaved_samples, latency_figures

    name, settings = name or selective.SWEPT_VARIANT, session.settings
    references = selective.references_of(name)
    if not settings.sweep_ks:
        raise QBenchError(f"{name}: --qbench-selective-k none: no sweep, so no model to show", fatal=False)
    builders = {k: session.builder.at_point(k) for k in settings.sweep_ks}
    if session.isolate and not all(b.is_current(name) for b in builders.values()):
        from qbench.measure.prepare import prepare_in_subprocess

        failed = prepare_in_subprocess(settings, session.dataset.fingerprint(), session.progress, (name,))
        if name in failed:
            raise failed[name]
    artifacts = {k: b.build(name) for k, b in builders.items()}
    _, y = session.dataset.test()
    runners, points = {}, []
    try:
        for k, art in artifacts.items():
            runners[k] = session.start_runner(name, art.path, art.meta, {}, track=False)
            scores = session.test_scores(runners[k])
            ranking = {r["tensor"]: r["snr_db"] for r in art.meta.get("ranking", [])}
            kept = list(art.meta.get("float_operators", []))
            points.append(
                {
                    "k": k,
                    "accuracy": float(np.mean(np.argmax(scores, axis=1) == y)),
                    "size_bytes": art.size_bytes,
                    "float_operators": kept,
                    "float_snr_db": [ranking.get(t) for t in kept],
                    "artifact": art.path.name,
                    **({"unmapped": art.meta["unmapped"]} if "unmapped" in art.meta else {}),
                }
            )
            session.progress(f"selective sweep ({name}): K={k}, accuracy {points[-1]['accuracy']:.4f}")
        timers = {f"K={k}": session.timer(name, runner) for k, runner in runners.items()}
        for ref in references:
            if ref in settings.variants:
                try:
                    session.evaluation(ref)
                    timers[ref] = session.timer(ref, session.runner(ref))
                except QBenchError as exc:
                    if exc.fatal:
                        raise
        session.progress(f"selective sweep: timing {', '.join(timers)} in interleaved rounds")
        blocks = interleaved_samples(timers, selective.BUDGET_SECONDS, 5, progress=None)
    finally:
        if session.isolate:
            for runner in runners.values():
                runner.close()
    for point in points:
        got = blocks.get(f"K={point['k']}")
        if got:
            fig = latency_figures(got)
            point["median_ms"] = fig["p50"] * 1e3
            point["median_ci_ms"] = [fig["median_ci_low"] * 1e3, fig["median_ci_high"] * 1e3]
    refs = {ref: float(np.median(np.concatenate(blocks[ref]))) * 1e3 for ref in references if ref in blocks}
    native = backends.reference_name()
    native_accuracy = session.evaluation(native).accuracy if native in settings.variants else None
    chosen = selective.choose(points, native_accuracy, settings.selective_target)
    rows = selective.sweep_rows(points, native_accuracy, refs, chosen)
    sweep = {"variant": name, "rows": rows, "chosen": chosen, "target": settings.selective_target, "reference_ms": refs}
    session.progress(selective.choice_line(sweep))
    return {**sweep, "artifact": artifacts[chosen["k"]]}
