"""Which machine a latency baseline belongs to.

pytest-benchmark files its runs under ``get_machine_id()``, which is
``Linux-CPython-3.11-64bit`` on every Linux box, so every user compared
against the development VM's absolute times.  qbench files them under a
fingerprint of what decides the speed: CPU model, usable cores, the
threads the runtimes were given (``--qbench-threads``), the runtimes'
versions, and the host itself (``/etc/machine-id``), because two
VMs that report the same CPU model can still differ by 20 % in speed.  The
id stays readable (``Linux-CPython-3.11-64bit-AMD_EPYC-2c-<hash>``); the
full fingerprint goes into pytest-benchmark's ``machine_info`` of every
saved run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import socket
from importlib.metadata import PackageNotFoundError, version

RUNTIMES = ("tensorflow", "ai-edge-litert", "apache-tvm", "openvino", "onnxruntime")


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def host_id() -> str:
    """A short, non-reversible id of this host (machine-id, else the hostname)."""
    raw = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError), open(path, encoding="ascii", errors="replace") as fh:
            raw = fh.read().strip()
        if raw:
            break
    raw = raw or socket.gethostname()
    return hashlib.blake2b(raw.encode(), digest_size=4).hexdigest()


def installed_versions(dists) -> dict[str, str | None]:
    """Each distribution's installed version, ``None`` where it is not installed."""
    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def fingerprint(threads: int | None = None) -> dict:
    """What a latency baseline is only valid for (``threads``: what every runtime is given, default the usable cores)."""
    cores = usable_cores()
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        "threads": int(threads or cores),
        "host": host_id(),
        "python": platform.python_version(),
    }
    return info | installed_versions(RUNTIMES)


def machine_id(fp: dict | None = None) -> str:
    """pytest-benchmark's machine id, made specific: ``<its id>-<cpu>-<cores>c-<hash of the fingerprint>``."""
    from pytest_benchmark.utils import get_machine_id

    fp = fp if fp is not None else fingerprint()
    digest = hashlib.blake2b(repr(sorted(fp.items())).encode(), digest_size=4).hexdigest()
    cpu = re.sub(r"[^A-Za-z0-9]+", "_", fp["cpu"]).strip("_")[:40] or "cpu"
    return f"{get_machine_id()}-{cpu}-{fp['cores']}c-{digest}"


def describe(fp: dict) -> str:
    runtimes = ", ".join(f"{d} {fp[d]}" for d in RUNTIMES if fp.get(d))
    threads = fp.get("threads", fp["cores"])
    return f"{fp['cpu']}, {fp['cores']} usable cores, {threads} threads, host {fp['host']}, Python {fp['python']}, {runtimes}"


def install(threads: int | None = None) -> str:
    """File pytest-benchmark's runs under :func:`machine_id` (call before its ``pytest_configure``, which is trylast)."""
    import pytest_benchmark.session

    mid = machine_id(fingerprint(threads))
    pytest_benchmark.session.get_machine_id = lambda: mid
    return mid
