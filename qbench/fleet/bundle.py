"""What the driver builds once and ships: the build dir's CPU-independent files, checked on arrival.

The model, the ``.tflite`` files, their calibration inputs and sidecars do
not depend on the CPU that runs them, so every machine would rebuild the
same bytes; they are built once on the driver and shipped.  Artifacts of a
:attr:`~qbench.backends.base.Variant.target_specific` variant (TVM's ``.so``)
are compiled on each machine.  A shipped file lands under the worker's build
dir with the same relative path, so that machine's cache finds it (the cache
key is the same because code and versions are, :mod:`qbench.fleet.identity`),
and its sha256 is checked before it is used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from qbench.core.errors import QBenchError
from qbench.core.fsutil import atomic_write_bytes, sha256_of

#: top-level parts of a build dir that are never shipped (reports, same-job base checkouts)
LOCAL_ONLY = ("report", "base")


def shippable(build_dir: Path, target_specific: tuple[str, ...]) -> list[Path]:
    """Files of ``build_dir`` another machine can use as they are."""
    out = []
    for path in sorted(build_dir.rglob("*")):
        rel = path.relative_to(build_dir)
        if not path.is_file() or rel.parts[0] in LOCAL_ONLY or path.name.startswith(".") or path.suffix == ".lock":
            continue
        if any(path.name.startswith(f"{name}-") for name in target_specific):
            continue  # compiled for this CPU (and its sidecar): each machine builds its own
        out.append(path)
    return out


def pack(build_dir: Path, target_specific: tuple[str, ...]) -> dict[str, tuple[str, bytes]]:
    """``relative path -> (sha256, bytes)`` of every shippable file."""
    out = {}
    for path in shippable(build_dir, target_specific):
        data = path.read_bytes()
        out[str(path.relative_to(build_dir))] = (hashlib.sha256(data).hexdigest(), data)
    return out


def unpack(bundle: dict[str, tuple[str, bytes]], build_dir: Path) -> int:
    """Write the bundle under ``build_dir`` (atomically, each file checked); returns how many files were new or changed."""
    written = 0
    for rel, (digest, data) in bundle.items():
        if hashlib.sha256(data).hexdigest() != digest:
            raise QBenchError(f"shipped file {rel} arrived damaged (sha256 mismatch)")
        target = build_dir / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise QBenchError(f"shipped file {rel} is not a path inside the build dir")
        if target.is_file() and sha256_of(target) == digest:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
        written += 1
    return written


def size(bundle: dict[str, tuple[str, bytes]]) -> int:
    return sum(len(data) for _digest, data in bundle.values())
