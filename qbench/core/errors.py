"""User-facing errors.

A :class:`QBenchError` carries one complete sentence that tells the user what
is wrong and what to do.  The pytest plugin turns it into a single error line
instead of a traceback; a *fatal* error (bad dataset, corrupt model: nothing
else can run either) also stops the session.
"""


class QBenchError(Exception):
    """Bad input or environment: the message is shown to the user verbatim."""

    def __init__(self, message: str, *, fatal: bool = True):
        super().__init__(message)
        self.fatal = fatal


def one_line(exc: BaseException, limit: int = 200) -> str:
    """One line for an exception whose message may be many: the first non-empty line, or the last
    when the message is a traceback (TVM's errors end with what went wrong), cut at ``limit``
    characters; the exception's type name when it has no message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if lines[0].startswith("Traceback") else lines[0])[:limit]
