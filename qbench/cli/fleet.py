"""``qbench fleet tcp://HOST:8786 [pytest options]``: the benchmark on every ``qbench`` worker of a Dask scheduler.

The same as ``pytest benchmarks --qbench-fleet tcp://HOST:8786 [options]``
(:mod:`qbench.fleet`), with the same options; run it from the checkout.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("-"):
        print(
            "usage: qbench fleet tcp://HOST:PORT [pytest options, e.g. --qbench-profile smoke --qbench-fleet-timeout 1800]\n"
            "runs `pytest benchmarks --qbench-fleet tcp://HOST:PORT ...` from this checkout; see docs/fleet.md",
            file=sys.stderr if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import pytest

    from qbench.fleet.identity import checkout_root

    return int(pytest.main([str(checkout_root() / "benchmarks"), f"--qbench-fleet={argv[0]}", *argv[1:]]))
