"""The interleaved latency campaigns of one run, and what the gate and the report read from them.

A run measures one campaign (every variant, its same-job base twin and the
harness floor, interleaved round by round, :func:`qbench.measure.latency.interleaved_samples`);
the gate asks for a second or third when a regression must be confirmed.
The *latest* campaign is the one a run reports and stores: when a
re-measurement clears a first campaign that looked slower, the first was a
slow phase of the machine and must not become a baseline.
"""

from __future__ import annotations

import numpy as np

from qbench.backends.identity import HARNESS_FLOOR
from qbench.measure.latency import interleaved_samples, phase_blocks

TWIN_SUFFIX = "@base"


def twin(variant: str) -> str:
    """The name a variant's same-job base twin has in a campaign (:mod:`qbench.gate.base`)."""
    return variant + TWIN_SUFFIX


def is_twin(name: str) -> bool:
    return name.endswith(TWIN_SUFFIX)


def twin_of(name: str) -> str:
    return name[: -len(TWIN_SUFFIX)]


def measured(name: str) -> bool:
    """A campaign entry that is one of this run's variants (not the harness floor, not a base twin)."""
    return name != HARNESS_FLOOR and not is_twin(name)


class Campaigns:
    """Each campaign's per-round blocks, by timer name (variant, ``<variant>@base``, ``harness-floor``)."""

    def __init__(self):
        self.runs: list[dict[str, list[np.ndarray]]] = []

    def __len__(self) -> int:
        return len(self.runs)

    def run(self, timers: dict, max_time: float, min_rounds: int, on_error, progress) -> None:
        again = " again, to confirm" if self.runs else ""
        progress(f"latency: timing {', '.join(timers)} in interleaved rounds{again}, about {max_time:g}s each")
        self.runs.append(interleaved_samples(timers, max_time, min_rounds, on_error=on_error, progress=progress))

    @property
    def latest(self) -> int:
        return max(0, len(self.runs) - 1)

    def blocks(self, name: str, campaign: int, phase: str = "end_to_end") -> list[np.ndarray] | None:
        """``name``'s blocks in ``campaign`` (one phase's column), or ``None`` if it has none there."""
        blocks = self.runs[campaign].get(name)
        return None if blocks is None else phase_blocks(blocks, phase)

    def sketches(self) -> dict:
        """Block sketches of every variant in the latest campaign (empty if none ran)."""
        from qbench.core.stats import block_sketches

        if not self.runs:
            return {}
        return {name: block_sketches(phase_blocks(b, "end_to_end")) for name, b in self.runs[-1].items() if measured(name)}

    def samples(self, phase: str = "end_to_end") -> dict[str, np.ndarray]:
        """Every per-call time (seconds) of each variant in the latest campaign: the report's distributions."""
        if not self.runs:
            return {}
        return {name: np.concatenate(phase_blocks(b, phase)) for name, b in self.runs[-1].items() if measured(name)}

    def floor(self) -> np.ndarray | None:
        """End-to-end seconds of the harness floor in the latest campaign (``None`` if none ran)."""
        blocks = self.blocks(HARNESS_FLOOR, self.latest) if self.runs else None
        return None if blocks is None else np.concatenate(blocks)
