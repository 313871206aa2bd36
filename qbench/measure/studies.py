"""The quantization studies of a run, driven through the session that holds its builds and workers.

* :func:`calibration_study`: each calibration set's int8 model built (in a
  child when isolated), evaluated in a worker of its own, compared with
  ``native`` (:mod:`qbench.measure.calibration_study` has the sets and rows);
* :func:`layer_errors`: each activation of a full-integer variant against
  ``tflite-fp32``'s on the first test images (:mod:`qbench.measure.layer_error`).

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
        from qbench.measure.prepare import prepare_in_subprocess

        prepare_in_subprocess(session.settings, session.dataset.fingerprint(), session.progress, calibration_study=True)
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
