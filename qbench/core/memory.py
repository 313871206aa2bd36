"""This process's resident memory, from ``/proc/self/status`` (Linux), and a resettable peak.

``VmRSS`` is what is resident now; ``VmHWM`` the peak since the process
started or since ``5`` was last written to ``/proc/self/clear_refs``, which
resets it to the current ``VmRSS``.  Both count every resident page of the
process: heap, the runtime's arenas and thread stacks, and the mapped
parts of shared libraries and model files that were touched.
"""

from __future__ import annotations

from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def resident_kib() -> int | None:
    return _status_kib("VmRSS")


def peak_kib() -> int | None:
    return _status_kib("VmHWM")


def reset_peak() -> bool:
    """Start a new peak at the current resident set; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
