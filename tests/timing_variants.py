"""Test-only variants with known per-call cost (``-p tests.timing_variants``).

``noop`` does nothing: its measured latency is the harness's own cost per
call.  ``busy-200us`` spins for exactly 200 microseconds per call.  If the
figures carried the pipe between pytest and the worker (tens of
microseconds), ``noop`` would show it.
"""

from __future__ import annotations

import time

from qbench.backends import Variant, register
from tests.variant_kit import StubRunner, build_stub

BUSY_SECONDS = 200e-6


class Noop(StubRunner):
    pass


class BusyWait(StubRunner):
    def work(self):
        end = time.perf_counter() + BUSY_SECONDS
        while time.perf_counter() < end:
            pass


for name, cls in (("noop", Noop), ("busy-200us", BusyWait)):
    register(
        Variant(
            name=name,
            description=f"test-only: {cls.__doc__ or cls.__name__}",
            suffix=".json",
            build=build_stub,
            load=lambda path, meta, threads, _cls=cls, _name=name, **_: _cls(_name, path),
        )
    )
