"""``python -m qbench.measure.worker IN_FD OUT_FD``: one variant's runtime, alone in its own process.

The parent (:mod:`qbench.measure.isolation`) starts one worker per variant and sends
it commands over a pipe: load the artifact, evaluate the test split, call a
runner method, time N calls.  Timing happens here, with ``perf_counter``
around each call, so the figures never include the pipe.  If the runtime
crashes, only this process dies; the parent names the variant, the step and
the signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path


def die_with_parent() -> None:
    """Linux: be killed when the parent goes (a stopped worker must not outlive pytest)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerState:
    def __init__(self):
        self.runner = None
        self.inputs = None
        self.load_s = None
        self._batch_runners: dict = {}  # batch size -> Runner or None (the runtime takes one image a call)

    def runtime_baseline(self, variant, origins):
        """Import what the variant's load imports, then read the resident set: the baseline of its costs
        (a worker that loaded nothing), so Python's and the runtime's own imports are not the variant's."""
        import importlib
        import time

        from qbench import backends
        from qbench.core.memory import resident_kib

        for origin in origins:
            backends.import_origin(origin)
        t0, since = time.perf_counter(), time.monotonic()  # monotonic: one clock for every process of the machine
        for module in backends.get(variant).runtime_modules:
            importlib.import_module(module)
        return {"import_s": time.perf_counter() - t0, "imported": [since, time.monotonic()], "rss_kib": resident_kib()}

    def load(self, variant, path, meta, threads, options, origins, hold_mib=0.0):
        """Load the artifact; ``hold_mib``: an injected memory regression (``--qbench-inject-memory``), held from here on."""
        import time

        from qbench import backends

        for origin in origins:
            backends.import_origin(origin)
        t0 = time.perf_counter()
        self.runner = backends.get(variant).load(Path(path), meta or {}, threads, **(options or {}))
        if hold_mib:
            import numpy as np

            self._held = np.ones(int(hold_mib * (1 << 20)) // 8)  # written, so resident
        self.load_s = time.perf_counter() - t0
        return self.runner.describe()

    def load_costs(self):
        """Seconds from the artifact on disk to a ready runner, and the resident set after it."""
        from qbench.core.memory import resident_kib

        return {"load_s": self.load_s, "rss_kib": resident_kib()}

    def first_call(self):
        """The first inference after load, alone (cold: caches, lazy allocations, JIT)."""
        import time

        t0 = time.perf_counter()
        self.runner.predict_many(self.inputs[:1])  # one image, through the path the accuracy step takes
        return time.perf_counter() - t0

    def evaluate_peak(self):
        """The test split's scores, the resident set just before and the resident peak while computing them
        (``VmHWM`` after a reset); the test images are resident in both, so they cancel out."""
        from qbench.core.memory import peak_kib, reset_peak, resident_kib

        reset_peak()
        before = resident_kib()
        scores = self.runner.predict_many(self.inputs)
        return scores, {"rss_kib": before, "peak_kib": peak_kib()}

    def test_inputs(self, path, count, preprocess):
        """Read the session's test images from the file it wrote (``QBenchSession.worker_inputs``).

        Reading one ``.npy`` takes milliseconds; loading the dataset again here
        took 1.3-1.6 s per worker start, paid by every variant in every run.
        """
        import numpy as np

        from qbench.core.errors import QBenchError
        from qbench.model.datasets import to_model_input

        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise QBenchError(f"cannot read the session's test images {path}: {exc}; run again") from None
        if len(images) != count:
            raise QBenchError(f"{path} holds {len(images)} test images, the session has {count}; run again")
        self.inputs = to_model_input(images, preprocess)
        return len(self.inputs)

    def evaluate(self):
        return self.runner.predict_many(self.inputs)

    def call(self, method, args=()):
        return getattr(self.runner, method)(*args)

    def time(self, calls, method="phases", sample=0, stretch=1.0):
        from qbench.measure.latency import time_method

        return time_method(self.runner, method, self.inputs[sample : sample + 1], calls, stretch)

    def _batch(self, batch: int):
        if batch not in self._batch_runners:
            self._batch_runners[batch] = self.runner.batch_runner(int(batch))
        return self._batch_runners[batch]

    def batch_sizes(self, batches):
        """Which of ``batches`` the runtime takes (a runner for each is made now, outside any timing)."""
        return [b for b in batches if self._batch(b) is not None]

    def time_batch(self, batch, calls, stretch=1.0):
        """(calls, 2) seconds of calls on ``batch`` test images at once (:func:`qbench.measure.latency.time_phases`)."""
        import numpy as np

        from qbench.measure.latency import time_phases

        runner = self._batch(batch)
        x = np.take(self.inputs, np.arange(batch) % len(self.inputs), axis=0)
        return time_phases(runner, x, calls, stretch)

    def stream(self, start_at, seconds, stretch=1.0):
        """One of several concurrent single-image streams: end-to-end calls back to back from ``start_at``
        (``time.monotonic``, one clock for every process of the machine) for ``seconds``;
        how many calls finished and the seconds they took."""
        import time

        from qbench.measure.inject import stretch_call

        predict, x = stretch_call(self.runner.predict, stretch), self.inputs[:1]
        while (wait := start_at - time.monotonic()) > 0:
            time.sleep(min(wait, 0.01))
        t0 = time.perf_counter()
        end, calls = t0 + seconds, 0
        while time.perf_counter() < end:
            predict(x)
            calls += 1
        return calls, time.perf_counter() - t0

    def os_threads(self):
        """How many threads this process has now (Linux): what ``--qbench-threads`` must change."""
        import os

        return len(os.listdir("/proc/self/task"))

    def quit(self):
        if self.runner is not None:
            self.runner.close()


def serve(requests: Connection, replies: Connection) -> None:
    from qbench.core.errors import QBenchError, one_line

    state = WorkerState()
    while True:
        try:
            op, kwargs = requests.recv()
        except (EOFError, OSError):
            return
        try:
            replies.send(("ok", getattr(state, op)(**kwargs)))
        except QBenchError as exc:
            replies.send(("error", str(exc)))
        except Exception as exc:  # a runtime's own exception: one line for the parent
            traceback.print_exc()
            replies.send(("error", f"{type(exc).__name__}: {one_line(exc, 300)}"))
        if op == "quit":
            return


def main(argv: list[str]) -> int:
    die_with_parent()
    faulthandler.enable()  # a crash leaves the Python location in the log the parent reads
    serve(Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
