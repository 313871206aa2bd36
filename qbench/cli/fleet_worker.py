"""``qbench fleet-worker tcp://HOST:8786 [dask worker options]``: this machine's worker for ``--qbench-fleet``.

``dask worker tcp://HOST:8786 --nthreads 1 --resources qbench=1 --no-dashboard``
with the quiet settings of :mod:`qbench.fleet.quiet_worker`; any other
``dask worker`` option may follow (``--name zen4-a``, ``--host 10.0.0.7``).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(
            "usage: qbench fleet-worker tcp://HOST:PORT [dask worker options, e.g. --name zen4-a --host 10.0.0.7]",
            file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr,
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from qbench.fleet.quiet_worker import quiet_env, worker_command

    cmd = worker_command(argv[0], argv[1:])
    os.execve(sys.executable, cmd, quiet_env())
    return 0  # not reached
