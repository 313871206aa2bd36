"""A Dask worker that stays out of the way of the measurements on its machine.

A default Dask worker wakes up well over a hundred times a second while
idle: its statistical profiler samples every thread every 10 ms, its event
loop's tick watchdog runs every 20 ms, its memory monitor every 100 ms and
its system monitor every 500 ms.  On a 2-core machine that shows in the
medians qbench measures.  The fleet's worker turns the profiler off and
slows the rest to once a second or less; heartbeats to the scheduler, which
tell it the worker is alive, are left as Dask sets them.
"""

from __future__ import annotations

import os
import sys

#: Dask config through its environment-variable form (``DASK_<SECTION>__<KEY>``)
QUIET = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__TICK__LIMIT": "30s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "1s",
}


def quiet_env(base: dict | None = None) -> dict:
    """``base`` (default this process's environment) with :data:`QUIET` set, unless already set there."""
    env = dict(os.environ if base is None else base)
    for key, value in QUIET.items():
        env.setdefault(key, value)
    return env


def worker_command(scheduler: str, extra: list[str]) -> list[str]:
    """``dask worker SCHEDULER`` with one thread, the ``qbench`` resource and no dashboard, then ``extra``.

    Even without its dashboard a Dask worker serves HTTP (health, metrics) on
    all interfaces; with ``--host H`` and no ``--dashboard-address`` of the
    user's, that server binds ``H`` too, so a worker told to listen on one
    address listens on no other.
    """
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "1"]
    cmd += ["--resources", "qbench=1", "--no-dashboard"]
    names = [a.split("=", 1)[0] for a in extra]
    if "--host" in names and "--dashboard-address" not in names:
        i = names.index("--host")
        host = extra[i].split("=", 1)[1] if "=" in extra[i] else extra[i + 1]
        cmd += ["--dashboard-address", f"{host}:0"]
    return [*cmd, *extra]
