"""The fleet's pytest options (``--qbench-fleet*``, ``qbench_fleet*`` ini keys), in the table format of :mod:`qbench.config`."""

from __future__ import annotations

FLEET_OPTIONS = [
    (
        "fleet",
        str,
        None,
        "tcp://HOST:PORT of a Dask scheduler: run this benchmark on every worker offering the qbench resource "
        "(dask worker ... --resources qbench=1) and merge the results into <reports>/fleet/",
    ),
    (
        "fleet-timeout",
        float,
        3600.0,
        "seconds one machine's run may take (its pytest is killed after that) before its column says timed out",
    ),
]
