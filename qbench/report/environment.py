"""The environment table of a run's report: machine, versions, settings, data and model.

Why here: it is what the report shows (summary.json's ``environment``, index.html's last table); the
session only hands itself over.
"""

from __future__ import annotations


def run_environment(session, machine_id: str) -> dict:
    """``machine_id``: the fingerprint stored runs are filed under (:mod:`qbench.gate.fingerprint`)."""
    import contextlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from qbench.core.machine import ISA_LABELS, cpu_model, machine_isa

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_kind": ISA_LABELS[machine_isa()],
        "fingerprint": machine_id,
        "threads": session.settings.threads,
        "profile": session.settings.profile.name,
        "dataset": session.settings.dataset,
        "seed": session.settings.seed,
        "isolation": "one worker process per variant" if session.isolate else "in-process",
    }
    if session._dataset is not None:
        info.update(
            train_samples=int(len(session._dataset.train_idx)),
            test_samples=int(len(session._dataset.test_idx)),
            image_size=session._dataset.image_size,
            calibration_samples=int(min(session.settings.n_calibration, len(session._dataset.train_idx))),
            calibration_split="train",
        )
    if session._model_info is not None:
        info["model"] = str(session._model_info.path)
        info["trained_here"] = session._model_info.trained_here
        info["model_key"] = session._model_info.key
    for dist in ("tensorflow", "keras", "ai-edge-litert", "apache-tvm"):
        with contextlib.suppress(PackageNotFoundError):
            info[f"{dist.replace('-', '_')}_version"] = version(dist)
    return info
