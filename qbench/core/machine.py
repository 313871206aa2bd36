"""What this machine is, as the runtimes see it: the CPU's ISA features, family and caches, the usable cores,
the installed runtimes' versions.

Why a module of its own: the gate's fingerprint (:mod:`qbench.gate.fingerprint`) keys stored runs by
these facts, the peers' backends record their library versions with them, and the tuner needs the cores;
all read them here, below everything else.
"""

from __future__ import annotations

import contextlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def cpu_model() -> str:
    return parse_cpuinfo(read_cpuinfo())["cpu"]


def machine_isa() -> str:
    """This machine's :func:`isa_class`."""
    return isa_class(parse_cpuinfo(read_cpuinfo())["isa"])
