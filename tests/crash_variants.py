"""Test-only variants that crash natively, one per step (``-p tests.crash_variants``).

* ``crash-build``  - its build aborts (``os.abort()``)
* ``crash-abort``  - its runner aborts on the first inference (the accuracy step)
* ``crash-segv``   - accuracy passes (batch path), a single-image call segfaults (the latency step)
* ``load-error``   - builds, then its runtime refuses the fresh artifact (as LiteRT refuses a
  16x8 model whose depthwise quantization would overflow): a failure, not a stale cache to rebuild
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from qbench.backends import Variant, register
from qbench.core.errors import QBenchError
from tests.variant_kit import StubRunner, build_stub


def _abort_build(ctx, out):
    os.abort()


class AbortRunner(StubRunner):
    def work(self):
        os.abort()


class SegvOnSingleImage(StubRunner):
    def predict_many(self, x):
        return np.repeat(self._scores, len(x), axis=0)

    def work(self):
        ctypes.string_at(0)


def _refuse(path, meta, threads, **_):
    raise QBenchError(f"load-error: the runtime cannot load {path}: node 14 failed to prepare", fatal=False)


def _stub(name, runner_cls, build=build_stub, load=None, **kw):
    return Variant(
        name=name,
        description=f"test-only: {runner_cls.__name__}",
        suffix=".json",
        build=build,
        load=load or (lambda path, meta, threads, **_: runner_cls(name, path)),
        **kw,
    )


register(_stub("crash-build", StubRunner, build=_abort_build))
register(_stub("crash-abort", AbortRunner))
register(_stub("crash-segv", SegvOnSingleImage))
register(_stub("load-error", StubRunner, load=_refuse))
