"""What must match between the driver and a worker before a worker measures: code, qbench, runtimes.

A machine that runs other code or other runtime versions measures something
else, and its column would sit beside the others as if it were the same
benchmark.  The check is cheap (no TensorFlow import): the installed
versions from package metadata and a hash of the checkout's sources.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from qbench.core.machine import installed_versions

#: what decides what a run measures, besides the code
RUNTIMES = (
    "tensorflow",
    "keras",
    "ai-edge-litert",
    "apache-tvm",
    "apache-tvm-ffi",
    "numpy",
    "scikit-learn",
    "pytest-benchmark",
    "openvino",
    "onnxruntime",
)
#: the sources a benchmark run executes, relative to the checkout
SOURCES = ("qbench", "benchmarks", "conftest.py", "pyproject.toml")


def checkout_root() -> Path:
    """The source checkout this qbench runs from (the fleet runs ``pytest benchmarks`` there)."""
    import qbench

    return Path(qbench.__file__).resolve().parent.parent


def source_hash(root: Path | None = None) -> str:
    """sha256 over the checkout's sources (names and bytes, ``__pycache__`` left out), first 16 hex digits."""
    root = root or checkout_root()
    digest = hashlib.sha256()
    for top in SOURCES:
        path = root / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for f in files:
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def identity(root: Path | None = None) -> dict:
    """This process's qbench version, source hash, Python and runtime versions."""
    import qbench

    return {
        "qbench": qbench.__version__,
        "sources": source_hash(root),
        "python": platform.python_version(),
        **installed_versions(RUNTIMES),
    }


def difference(driver: dict, worker: dict) -> str | None:
    """The first way ``worker`` differs from ``driver``, as words (``tensorflow 2.21.0 on the driver, 2.20.0 here``)."""
    for key, want in driver.items():
        have = worker.get(key)
        if have != want:
            what = "source hash (qbench/, benchmarks/, pyproject.toml)" if key == "sources" else key
            return f"{what} {want or 'not installed'} on the driver, {have or 'not installed'} here"
    return None
