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
