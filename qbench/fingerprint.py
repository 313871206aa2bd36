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

import contextlib
import hashlib
import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RUNTIMES = ("tensorflow", "ai-edge-litert", "apache-tvm", "openvino", "onnxruntime")

# /proc/cpuinfo flags that change which kernels a runtime dispatches to.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

CPU_FIELDS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping", "cache size": "cache"}


def read_cpuinfo(path: str | os.PathLike = "/proc/cpuinfo") -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text(encoding="utf-8", errors="replace")
    return ""


def parse_cpuinfo(text: str) -> dict:
    """The first processor's model name, vendor/family/model/stepping, cache size and speed-relevant ISA flags."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: a VM's vCPUs are alike
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    info = {"cpu": fields.get("model name") or platform.processor() or platform.machine() or "unknown"}
    info |= {name: fields.get(key, "") for key, name in CPU_FIELDS.items()}
    info["isa"] = [f for f in ISA_FLAGS if f in flags]
    return info


def isa_class(isa) -> str:
    """The widest int8 dot-product class of a CPU, for ids and tables: what decides XNNPACK's int8 kernels."""
    isa = set(isa)
    if {"amx_int8", "amx_tile"} <= isa:
        return "amx"
    if "avx512_vnni" in isa:
        return "avx512vnni"
    if "avx512f" in isa:
        return "avx512"
    if "avx_vnni" in isa:
        return "avxvnni"
    if "avx2" in isa:
        return "avx2"
    return "sse"


ISA_LABELS = {
    "amx": "AMX",
    "avx512vnni": "AVX-512 VNNI",
    "avx512": "AVX-512, no VNNI",
    "avxvnni": "AVX-VNNI (256-bit), no AVX-512",
    "avx2": "AVX2 only",
    "sse": "no AVX2",
}


def cache_sizes(root: str | os.PathLike = "/sys/devices/system/cpu/cpu0/cache") -> str:
    """``L1d 48K, L1i 32K, L2 1024K, L3 32768K`` from sysfs (empty where it is not exposed)."""
    parts = []
    for index in sorted(Path(root).glob("index*")):
        with contextlib.suppress(OSError):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
            suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
            parts.append(f"L{level}{suffix} {size}")
    return ", ".join(parts)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def installed_versions(dists) -> dict[str, str | None]:
    """Each distribution's installed version, ``None`` where it is not installed."""
    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


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


def cpu_model() -> str:
    return parse_cpuinfo(read_cpuinfo())["cpu"]


def machine_isa() -> str:
    """This machine's :func:`isa_class`."""
    return isa_class(parse_cpuinfo(read_cpuinfo())["isa"])


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
