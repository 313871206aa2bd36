"""The run's raw measurements beside its summary: per-image predictions and every latency sample.

summary.json holds figures (medians, intervals, accuracy); what they were
computed from goes to ``measurements.json`` so that a tool that merges runs
(the fleet, :mod:`qbench.fleet`) or a reader who doubts a figure can
recompute it without re-running.
"""

from __future__ import annotations

from pathlib import Path

from qbench.core.fsutil import atomic_write_json


def write_measurements(out_dir: Path, evaluated: dict, samples_s: dict, environment: dict) -> Path:
    """``measurements.json``: ``{variant: {"y_true", "y_pred", "latency_ms"}}`` plus the run's fingerprint."""
    variants: dict[str, dict] = {}
    for name, ev in evaluated.items():
        variants.setdefault(name, {}).update(y_true=ev.y_true.astype(int).tolist(), y_pred=ev.y_pred.astype(int).tolist())
    for name, samples in samples_s.items():
        variants.setdefault(name, {})["latency_ms"] = [round(float(s) * 1e3, 6) for s in samples]
    path = Path(out_dir) / "measurements.json"
    atomic_write_json(path, {"fingerprint": environment.get("fingerprint"), "variants": variants})
    return path
