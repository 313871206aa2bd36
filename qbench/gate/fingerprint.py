"""Which kind of machine a latency baseline belongs to.

pytest-benchmark files its runs under ``get_machine_id()``, which is
``Linux-CPython-3.11-64bit`` on every Linux box.  qbench files them under a
fingerprint of what decides the speed of an int8 or float kernel:

* the CPU's instruction-set features that the runtimes dispatch on at run
  time (XNNPACK, oneDNN, OpenVINO and ONNX Runtime all pick kernels by
  CPUID): AVX2, FMA, F16C, AVX-512 F/BW/VL, AVX-512 VNNI, AVX-VNNI,
  AVX-512 BF16/FP16, AMX;
* vendor, family, model and stepping, and the cache sizes;
* the usable cores, the threads the runtimes were given (``--qbench-threads``)
  and the runtimes' versions.

``/proc/cpuinfo``'s model name says "AMD EPYC" on an AVX2-only Zen 3 VM and
on an AVX-512 VNNI one alike, and ``/etc/machine-id`` is the same on every VM
made from one image, so neither is used as an identity.  The fingerprint
therefore names a *kind* of machine, not a host: two VMs of the same CPU
kind, cores and versions share a stored run (a noisy neighbour on one of
them is not told apart), while a VM with other instructions never meets the
other's absolute times.

The id stays readable (``Linux-CPython-3.11-64bit-AMD_EPYC-avx512vnni-2c-<hash>``);
the full fingerprint goes into pytest-benchmark's ``machine_info`` of every
saved run.
"""

from __future__ import annotations

import hashlib
import platform
import re

from qbench.core.machine import ISA_LABELS, cache_sizes, installed_versions, isa_class, parse_cpuinfo, read_cpuinfo, usable_cores

RUNTIMES = ("tensorflow", "ai-edge-litert", "apache-tvm", "openvino", "onnxruntime")


def fingerprint(threads: int | None = None, cpuinfo: str | None = None, caches: str | None = None) -> dict:
    """What a latency baseline is only valid for (``threads``: what every runtime is given, default the usable cores).

    ``cpuinfo`` and ``caches`` default to this machine's (a test passes recorded texts).
    """
    cores = usable_cores()
    info = parse_cpuinfo(read_cpuinfo() if cpuinfo is None else cpuinfo)
    info |= {
        "isa_class": isa_class(info["isa"]),
        "caches": cache_sizes() if caches is None else caches,
        "cores": cores,
        "threads": int(threads or cores),
        "python": platform.python_version(),
    }
    return info | installed_versions(RUNTIMES)


def machine_id(fp: dict | None = None) -> str:
    """pytest-benchmark's machine id, made specific: ``<its id>-<cpu>-<isa class>-<cores>c-<hash of the fingerprint>``."""
    from pytest_benchmark.utils import get_machine_id

    fp = fp if fp is not None else fingerprint()
    digest = hashlib.blake2b(repr(sorted((k, str(v)) for k, v in fp.items())).encode(), digest_size=4).hexdigest()
    cpu = re.sub(r"[^A-Za-z0-9]+", "_", fp["cpu"]).strip("_")[:40] or "cpu"
    return f"{get_machine_id()}-{cpu}-{fp['isa_class']}-{fp['cores']}c-{digest}"


def describe(fp: dict) -> str:
    runtimes = ", ".join(f"{d} {fp[d]}" for d in RUNTIMES if fp.get(d))
    threads = fp.get("threads", fp["cores"])
    cpu = f"{fp['cpu']} (family {fp.get('family', '?')} model {fp.get('model', '?')}, {ISA_LABELS[fp['isa_class']]})"
    return f"{cpu}, {fp['cores']} usable cores, {threads} threads, Python {fp['python']}, {runtimes}"


def install(threads: int | None = None) -> str:
    """File pytest-benchmark's runs under :func:`machine_id` (call before its ``pytest_configure``, which is trylast)."""
    import pytest_benchmark.session

    mid = machine_id(fingerprint(threads))
    pytest_benchmark.session.get_machine_id = lambda: mid
    return mid
