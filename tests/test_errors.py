"""``qbench.core.errors.one_line``: what every backend shows of a runtime's own exception."""

from __future__ import annotations

import pytest

from qbench.core.errors import one_line


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ValueError("bad magic number\n  at offset 0\n"), "bad magic number"),
        (RuntimeError("\nTraceback (most recent call last):\n  File 'x.cc'\nInternalError: n > 0\n"), "InternalError: n > 0"),
        (OSError(), "OSError"),
        (ValueError("   "), "ValueError"),
        (ValueError("x" * 500), "x" * 200),
    ],
    ids=["first-line", "traceback-last-line", "no-message", "blank-message", "cut"],
)
def test_one_line(exc, expected):
    assert one_line(exc) == expected
    assert "\n" not in one_line(exc)
