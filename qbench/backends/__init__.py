"""The variant registry: every part of qbench asks it, never a variant's name.

Built-in backends (``keras``, ``tflite``, ``tvm``) register their variants
when this package is first asked.  A user adds a variant from a
``conftest.py`` or a plugin module with :func:`register`; the registering
module is remembered, so a worker process (where the variant is loaded and
timed) imports that module too and finds the same record.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from qbench.backends.base import REFERENCE_MODEL, Runner, Variant
from qbench.core.errors import QBenchError

__all__ = ["REFERENCE_MODEL", "Runner", "Variant", "register", "unregister", "get", "all_variants", "names", "origins"]

BUILTIN_BACKENDS = (
    "qbench.backends.keras",
    "qbench.backends.tflite",
    "qbench.backends.tflite_qat",
    "qbench.backends.tflite_selective",
    "qbench.backends.tvm",
    "qbench.backends.openvino_runtime",
    "qbench.backends.openvino_selective",
    "qbench.backends.onnx_runtime",
    "qbench.backends.identity",
)

_REGISTRY: dict[str, Variant] = {}
_builtins_loaded = False


def _origin_of_caller(depth: int = 2) -> str:
    frame = inspect.stack()[depth].frame
    module = frame.f_globals.get("__name__", "")
    path = frame.f_globals.get("__file__") or ""
    return f"{'' if module == '__main__' else module}|{path}"


def register(variant: Variant) -> Variant:
    """Add (or replace) a variant; returns it with its origin recorded."""
    from dataclasses import replace

    _load_builtins()  # built-ins first, so they keep their place in the table
    if not variant.name or "," in variant.name or variant.name.strip() != variant.name:
        raise QBenchError(f"invalid variant name {variant.name!r}")
    if not variant.suffix.startswith("."):
        raise QBenchError(f"variant {variant.name}: suffix must start with '.', got {variant.suffix!r}")
    variant = replace(variant, origin=variant.origin or _origin_of_caller())
    _REGISTRY[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_BACKENDS:
            importlib.import_module(module)


def all_variants() -> list[Variant]:
    """Registered variants in registration order (built-ins first)."""
    _load_builtins()
    return list(_REGISTRY.values())


def names(default_only: bool = False) -> tuple[str, ...]:
    """Selectable variant names (``timing_only`` records such as the harness floor are not)."""
    return tuple(v.name for v in all_variants() if not v.timing_only and (v.default or not default_only))


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> its variants (e.g. ``peers``), in registration order."""
    out: dict[str, list[str]] = {}
    for v in all_variants():
        if v.group and not v.timing_only:
            out.setdefault(v.group, []).append(v.name)
    return {g: tuple(members) for g, members in out.items()}


def get(name: str) -> Variant:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise QBenchError(f"unknown variant {name!r}; choose from {', '.join(names())}") from None


def reference_name() -> str | None:
    """The variant every ratio is relative to (``native``)."""
    return next((v.name for v in all_variants() if v.is_reference), None)


def origins(variant_names) -> list[str]:
    """The modules a worker must import to find these variants (non-built-in only)."""
    out = []
    for name in variant_names:
        origin = get(name).origin
        if not origin.startswith("qbench.backends.") and origin not in out:
            out.append(origin)
    return out


def import_origin(origin: str) -> None:
    """Import a registering module in a worker: by name if possible, else by file."""
    module, _, path = origin.partition("|")
    if module:
        try:
            importlib.import_module(module)
            return
        except ImportError:
            if not path:
                raise
    if path:
        name = f"qbench_user_{abs(hash(path))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise QBenchError(f"cannot import {path} to find its registered variants")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        sys.path.insert(0, str(Path(path).parent))
        spec.loader.exec_module(mod)
