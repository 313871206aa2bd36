"""Test-only plugin (``-p tests.slow_writes``): hold an atomic write open so a test can SIGKILL the run inside it.

Every qbench write ends in ``os.fsync`` of its temporary file before the
rename (:func:`qbench.core.fsutil.atomic_path`).  With ``QBENCH_SLOW_WRITE`` set
to a substring, the fsync of a file whose path contains it prints
``@slow-write <path>`` on stderr and sleeps, so the test knows the run is
mid-write and kills it there.
"""

from __future__ import annotations

import os
import sys
import time

_fsync = os.fsync


def _slow_fsync(fd):
    needle = os.environ.get("QBENCH_SLOW_WRITE", "")
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        path = ""
    if needle and needle in path:
        print(f"@slow-write {path}", file=sys.stderr, flush=True)
        time.sleep(120)
    return _fsync(fd)


def pytest_configure(config):
    os.fsync = _slow_fsync
