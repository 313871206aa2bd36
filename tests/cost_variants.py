"""Test-only variants whose memory is known (``-p tests.cost_variants``): the costs measurement's yardstick.

``test-alloc-100-50`` holds 100 MiB (written, so resident) from load on and
allocates 50 MiB more, touches and frees it, on every call: its load
memory is 100 MiB and its peak 150 MiB.  ``test-noop`` holds nothing.
Both predict a constant and are never selected by "all".
"""

from __future__ import annotations

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


def _build(ctx, out_path) -> dict:
    out_path.write_bytes(b"qbench test-only variant")
    return {"image_size": ctx.model_info.image_size}


def _variant(name: str, load_mib: int, call_mib: int) -> Variant:
    return Variant(
        name=name,
        description=f"test only: {load_mib} MiB held from load, {call_mib} MiB more in each call",
        suffix=".bin",
        build=_build,
        load=lambda path, meta, threads, **_: AllocatingRunner(name, int(meta["image_size"]), load_mib, call_mib),
        default=False,
    )


register(_variant("test-alloc-100-50", 100, 50))
register(_variant("test-noop", 0, 0))
