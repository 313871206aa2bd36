"""Test-only variants whose costs are known (``-p tests.cost_variants``): the costs and throughput measurements' yardstick.

``test-alloc-100-50`` holds 100 MiB (written, so resident) from load on and
allocates 50 MiB more, touches and frees it, on every call: its load
memory is 100 MiB and its peak 150 MiB.  ``test-noop`` holds nothing.
``test-slow-import`` is ``test-noop`` whose runtime takes 0.5 s to import
(``tests.slow_import``).  ``test-sleep-2ms`` sleeps 2 ms a call, whatever the batch (it takes one):
8 images a call run 8x the images per second of one, and two concurrent
streams twice one stream's, since sleeping uses no core.
All predict a constant and are never selected by "all".
"""

from __future__ import annotations

import time

import numpy as np

from qbench.backends import Variant, register
from qbench.backends.base import Runner

MIB = 1 << 20


class AllocatingRunner(Runner):
    def __init__(self, variant: str, image_size: int, load_mib: int, call_mib: int):
        self.variant = variant
        self.input_shape = (1, image_size, image_size, 3)
        self._held = np.ones(load_mib * MIB // 8) if load_mib else None  # np.ones writes every page: resident
        self._call_bytes = call_mib * MIB

    def invoke(self, prepared) -> np.ndarray:
        if self._call_bytes:
            scratch = np.ones(self._call_bytes // 8)
            del scratch  # freed (munmap): the peak keeps it, the resident set does not
        return np.full((1, 10), 0.1, dtype=np.float32)


class SleepingRunner(Runner):
    def __init__(self, variant: str, image_size: int, seconds: float, batch: int = 1):
        self.variant = variant
        self.input_shape = (batch, image_size, image_size, 3)
        self._seconds = seconds

    def invoke(self, prepared) -> np.ndarray:
        time.sleep(self._seconds)
        return np.full((self.input_shape[0], 10), 0.1, dtype=np.float32)

    def batch_runner(self, batch: int) -> Runner:
        return SleepingRunner(self.variant, self.input_shape[1], self._seconds, batch)


def _build(ctx, out_path) -> dict:
    out_path.write_bytes(b"qbench test-only variant")
    return {"image_size": ctx.model_info.image_size}


def _variant(name: str, load_mib: int, call_mib: int, runtime_modules: tuple[str, ...] = ()) -> Variant:
    return Variant(
        name=name,
        description=f"test only: {load_mib} MiB held from load, {call_mib} MiB more in each call",
        suffix=".bin",
        build=_build,
        load=lambda path, meta, threads, **_: AllocatingRunner(name, int(meta["image_size"]), load_mib, call_mib),
        runtime_modules=runtime_modules,
        default=False,
    )


register(_variant("test-alloc-100-50", 100, 50))
register(_variant("test-noop", 0, 0))
register(_variant("test-slow-import", 0, 0, runtime_modules=("tests.slow_import",)))
register(
    Variant(
        name="test-sleep-2ms",
        description="test only: sleeps 2 ms a call, whatever the batch",
        suffix=".bin",
        build=_build,
        load=lambda path, meta, threads, **_: SleepingRunner("test-sleep-2ms", int(meta["image_size"]), 0.002),
        default=False,
    )
)
