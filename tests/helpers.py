"""Helpers for qbench's own tests: a generated Pet tree, a pytest subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qbench.model.synthetic_pet import PET_BREEDS, PET_HEADER, make_pet_tree, pet_breeds  # noqa: F401 - re-exported for tests

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = (
    "native",
    "tflite-fp32",
    "tflite-fp16",
    "tflite-dynamic",
    "tflite-int8",
    "tflite-int16x8",
    "tflite-int8-qat",
    "tflite-int8-selective",
    "tvm-avx2-int8",
)


def run_pytest(*args: str, cwd: Path = REPO, timeout: int = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run pytest in a fresh interpreter (what a user types), capturing output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
