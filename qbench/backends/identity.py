"""The harness floor: an identity "runtime" timed by exactly the path every variant is timed by.

Every latency qbench reports includes the harness: the worker's timing loop,
the Python calls into the runner, the input check and the output copy.  This
runner does nothing else (``invoke`` hands back a preallocated score vector),
so its end-to-end time is that floor, printed under the summary table.  It is
registered like a variant so a worker can load it, but it is ``timing_only``:
never selected, evaluated or gated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant

HARNESS_FLOOR = "harness-floor"


class IdentityRunner(Runner):
    variant = HARNESS_FLOOR

    def __init__(self, input_shape, classes: int):
        self.input_shape = tuple(int(s) for s in input_shape)
        self._scores = np.zeros((1, int(classes)), np.float32)

    def invoke(self, prepared):
        return self._scores


def _load(_path, meta: dict, _threads, **_):
    return IdentityRunner(meta["input_shape"], meta["classes"])


def _nothing_to_build(_ctx, _out: Path) -> dict:
    raise NotImplementedError("the harness floor has no artifact")


register(
    Variant(
        name=HARNESS_FLOOR,
        description="identity runner: the overhead of the timing path itself, included in every latency",
        suffix=".none",
        build=_nothing_to_build,
        load=_load,
        default=False,
        timing_only=True,
    )
)
