"""Progress lines: what a long step says while it runs, each distinct line once where it would repeat."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def say_once(progress: Progress, prefixes: tuple[str, ...]) -> Progress:
    """``progress``, passing a message that starts with one of ``prefixes`` only the first time it is said.

    The session and each build child resolve the model and dataset again: where they came from is said once.
    """
    said: set[str] = set()

    def say(message: str) -> None:
        if message.startswith(prefixes):
            if message in said:
                return
            said.add(message)
        progress(message)

    return say
