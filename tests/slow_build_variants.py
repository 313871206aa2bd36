"""Test-only variants whose build takes two seconds (``-p tests.slow_build_variants``): ``slow-build-1`` .. ``-4``.

Long enough that two build children started together each get to the list's
own end before the other reaches it (``tests/test_build_jobs.py``).
"""

from __future__ import annotations

import time

from qbench.backends import Variant, register
from tests.variant_kit import StubRunner, build_stub

NAMES = tuple(f"slow-build-{i}" for i in range(1, 5))


def _slow_build(ctx, out) -> dict:
    time.sleep(2.0)
    return build_stub(ctx, out)


for _name in NAMES:
    register(
        Variant(
            name=_name,
            description="test-only: a stub whose build sleeps 2 s",
            suffix=".json",
            build=_slow_build,
            load=lambda path, meta, threads, _n=_name, **_: StubRunner(_n, path),
        )
    )
