"""Worker processes seen from the parent: start, talk to, pause, and survive them.

Each variant runs in its own ``python -m qbench.measure.worker`` process.  Only one
worker runs at a time: before a worker gets a command every other worker is
paused with SIGSTOP, so no other runtime's thread pool spins on the cores
while a variant is measured (TVM's and TensorFlow's pools keep spinning for a
while after a call).  A worker that dies (abort, segfault, killed for memory)
becomes a :class:`WorkerCrash` naming the variant, the step, the signal and
the last lines of its stderr; the session goes on with the other variants.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

from qbench.core.errors import QBenchError


class WorkerCrash(QBenchError):
    """A variant's process died; only that variant's tests fail."""

    def __init__(self, variant: str, step: str, how: str, tail: str):
        self.variant, self.step, self.how, self.tail = variant, step, how, tail
        super().__init__(f"{variant}: crashed during {step} ({how}); last stderr: {tail}", fatal=False)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        extra = ", killed: out of memory?" if -returncode == signal.SIGKILL else ""
        return f"{name}, signal {-returncode}{extra}"
    return f"exit code {returncode}"


_NOISE = re.compile(
    r"^[IW]\d{4} |All log messages before absl::InitializeLog|cuInit|cuda_platform|oneDNN custom operations"
    r"|TF_ENABLE_ONEDNN_OPTS|^Extension modules:|\(total: \d+\)$"
)


def stderr_tail(text: str, lines: int = 3, limit: int = 400) -> str:
    """The last few meaningful lines of a crashed process's stderr, on one line.

    Framework start-up chatter is dropped; a Python fault report (the worker
    enables :mod:`faulthandler`) is cut down to its first line and the
    innermost frame, i.e. where the crash happened.
    """
    raw = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    fatal = [i for i, ln in enumerate(raw) if ln.startswith("Fatal Python error:")]
    if fatal:
        start = fatal[-1]
        frame = next((ln.strip() for ln in raw[start + 1 :] if ln.strip().startswith("File ")), None)
        before = [ln.strip() for ln in raw[:start] if not _NOISE.search(ln)][-1:]
        keep = before + [raw[start].strip()] + ([f"at {frame}"] if frame else [])
    else:
        keep = [ln.strip() for ln in raw if not _NOISE.search(ln)][-lines:]
    if not keep:
        return "(nothing on stderr)"
    tail = " | ".join(keep)
    return tail if len(tail) <= limit else "..." + tail[-limit:]


def child_env(code_root: str | os.PathLike | None = None) -> dict:
    """The parent's environment, with qbench importable and TensorFlow's chatter down.

    ``code_root``: a checkout of another revision (the same-job base, :mod:`qbench.gate.base`) whose
    ``qbench`` package, if it has one, the child imports instead of this one.
    """
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    first = [str(code_root)] if code_root is not None else []
    paths = [*first, package_parent, str(code_root or os.getcwd()), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


_LIVE: list[Worker] = []

ADDR_NO_RANDOMIZE = 0x0040000  # linux/personality.h


def fixed_address_layout() -> None:
    """``preexec_fn``: start the worker without address-space randomization (like ``setarch -R``).

    Where a runtime's buffers land decides cache aliasing, and with ASLR that
    is a lottery drawn once per process: the native p10 latency of the
    default model spread 3.45-4.29 ms over 5 fresh processes with ASLR, and
    3.86-4.08 ms over 6 without (one-variant probe, development VM).  A
    process-level lottery cannot be averaged away inside one run, so it would
    reach the gate as a false regression; a fixed layout removes it.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).personality(ADDR_NO_RANDOMIZE)


class Worker:
    """One ``python -m qbench.measure.worker`` process for ``label`` (a variant name)."""

    def __init__(self, label: str, environment: dict[str, str] | None = None, code_root: Path | None = None):
        self.label = label
        self.stopped = False
        self.crash: WorkerCrash | None = None
        self.on_crash = None  # called with the WorkerCrash (the session records the variant as failed)
        self.log = tempfile.TemporaryFile("w+b")  # noqa: SIM115 - lives as long as the worker; closed in close()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qbench.measure.worker", str(req_r), str(rep_w)],
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=self.log,
                env=child_env(code_root) | (environment or {}),
                cwd=code_root,
                preexec_fn=fixed_address_layout if sys.platform.startswith("linux") else None,  # noqa: PLW1509 - no threads in the parent
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._requests = Connection(req_w, readable=False)
        self._replies = Connection(rep_r, writable=False)
        _LIVE.append(self)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _activate(self, together: tuple[Worker, ...] = ()) -> None:
        """Pause every other worker; resume this one (and ``together``)."""
        running = (self, *together)
        for other in _LIVE:
            if other not in running and not other.stopped and other.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(other.proc.pid, signal.SIGSTOP)
                other.stopped = True
        for worker in running:
            if worker.stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGCONT)
                worker.stopped = False

    def request(self, step: str, op: str, **kwargs):
        """Send one command; return its result, raise its error, or raise the crash."""
        if self.crash is not None:
            raise self.crash
        self._activate()
        self._send(step, op, kwargs)
        return self._receive(step)

    def _send(self, step: str, op: str, kwargs: dict) -> None:
        try:
            self._requests.send((op, kwargs))
        except (EOFError, OSError):
            raise self._crashed(step) from None

    def _receive(self, step: str):
        try:
            status, value = self._replies.recv()
        except (EOFError, OSError):
            raise self._crashed(step) from None
        if status == "error":
            raise QBenchError(value, fatal=False)
        return value

    def _crashed(self, step: str) -> WorkerCrash:
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        self.crash = WorkerCrash(self.label, step, describe_exit(rc), stderr_tail(text))
        self._forget()
        if self.on_crash is not None:
            self.on_crash(self.crash)
        return self.crash

    def _forget(self) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        for conn in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        close_workers([self])

    def _ask_to_quit(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            with contextlib.suppress(OSError, EOFError):
                self._requests.send(("quit", {}))

    def _await_exit(self) -> None:
        if self.alive:
            with contextlib.suppress(OSError, EOFError):
                self._replies.recv()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._forget()
        self.log.close()


def close_workers(workers) -> None:
    """Stop ``workers``: every one is told to quit before any is waited for, so their exits overlap.

    A native worker takes 1.4-1.5 s to exit (TensorFlow's teardown); one after another, a warm run's
    closes added up to 5 s.
    """
    workers = list(workers)
    ask_to_quit(workers)
    for worker in workers:
        worker._await_exit()


def ask_to_quit(workers) -> None:
    """Tell ``workers`` to quit without waiting for them: their exits overlap what the parent does next.

    Until :func:`close_workers` awaits them they are live workers like the others, so one that is still
    exiting when a worker is next measured is paused with the rest.
    """
    for worker in workers:
        worker._ask_to_quit()


def request_together(workers: list[Worker], step: str, op: str, **kwargs) -> list:
    """The same command to several workers at once, all of them running and every other worker paused
    (concurrent streams, :mod:`qbench.measure.throughput`); each one's result, or the first error or crash
    once every worker has answered."""
    for worker in workers:
        if worker.crash is not None:
            raise worker.crash
    workers[0]._activate(tuple(workers[1:]))
    for worker in workers:
        worker._send(step, op, kwargs)
    results, first_error = [], None
    for worker in workers:
        try:
            results.append(worker._receive(step))
        except QBenchError as exc:  # WorkerCrash included: the others' answers are still read
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return results


@atexit.register
def close_all() -> None:
    with contextlib.suppress(Exception):
        close_workers(list(_LIVE))


class RemoteRunner:
    """A runner living in a worker: the :class:`qbench.backends.Runner` calls, forwarded.

    ``step`` names what the calls are for (accuracy, agreement, latency), so a
    crash says which step of the variant died.
    """

    def __init__(self, worker: Worker, info: dict):
        self.worker = worker
        self.variant = info["variant"]
        self.input_shape = tuple(info["input_shape"])
        self.input_qparams = info["input_qparams"]
        self.output_qparams = info["output_qparams"]
        self.score_step = info.get("score_step")
        self.step = "run"
        self.costs: dict | None = None  # set by start_remote_runner(costs=True)

    @contextlib.contextmanager
    def during(self, step: str):
        previous, self.step = self.step, step
        try:
            yield self
        finally:
            self.step = previous

    def _call(self, method: str, *args):
        return self.worker.request(self.step, "call", method=method, args=args)

    def prepare(self, x):
        return self._call("prepare", x)

    def predict(self, x):
        return self._call("predict", x)

    def predict_many(self, x):
        return self._call("predict_many", x)

    def invoke_raw(self, q):
        return self._call("invoke_raw", q)

    def invoke_many(self, qs):
        return self._call("invoke_many", qs)

    def first_call(self) -> float:
        """Seconds of the first inference after load (call it before anything else runs the model)."""
        return self.worker.request(self.step, "first_call")

    def evaluate_peak(self):
        """The test split's scores, and the worker's resident set before and peak during the run (KiB)."""
        return self.worker.request(self.step, "evaluate_peak")

    def evaluate(self):
        """Float scores on the test split, computed in the worker from its own copy of the data."""
        return self.worker.request(self.step, "evaluate")

    def time(self, calls: int, method: str = "phases", stretch: float = 1.0):
        """Per-call seconds of ``calls`` back-to-back calls on the first test image, timed in the worker
        (:func:`qbench.measure.latency.time_method`; ``stretch``: an injected slowdown factor, :mod:`qbench.measure.inject`)."""
        return self.worker.request(self.step, "time", calls=calls, method=method, stretch=stretch)

    def batch_sizes(self, batches) -> list[int]:
        """Which of ``batches`` the variant's runtime takes in one call (:meth:`qbench.backends.Runner.batch_runner`)."""
        return self.worker.request(self.step, "batch_sizes", batches=list(batches))

    def time_batch(self, batch: int, calls: int, stretch: float = 1.0):
        """(calls, 2) seconds of end-to-end calls on ``batch`` images at once, timed in the worker."""
        return self.worker.request(self.step, "time_batch", batch=batch, calls=calls, stretch=stretch)

    def os_threads(self) -> int:
        """The worker's OS thread count (Linux), e.g. after timing: the runtime's pool is in it."""
        return self.worker.request(self.step, "os_threads")

    def close(self) -> None:
        self.worker.close()


def start_imported_workers(variant: str, count: int, code_root: Path | None = None, label: str | None = None) -> list:
    """``count`` fresh workers of ``variant``, each with the variant's runtime imported and its costs' baseline
    read (``runtime_baseline``), the imports made at once.

    An import is measured only by the resident set it leaves, which another process importing beside it does
    not change, so workers need not take turns for it (TensorFlow's import alone took 4.5 s here); what is
    timed (the load, the first call) still runs in one worker at a time, every other one paused.  Returns
    ``(worker, baseline)`` pairs for :func:`start_remote_runner`'s ``imported``.
    """
    from qbench import backends

    workers = [Worker(label or variant, backends.get(variant).environment, code_root) for _ in range(count)]
    try:
        baselines = request_together(workers, "load", "runtime_baseline", variant=variant, origins=backends.origins([variant]))
    except QBenchError:
        close_workers(w for w in workers if w.crash is None)
        raise
    return list(zip(workers, baselines, strict=True))


def start_remote_runner(
    variant: str,
    path: Path,
    meta: dict,
    threads: int,
    options: dict,
    session_inputs: dict,
    code_root: Path | None = None,
    label: str | None = None,
    costs: bool = False,
    hold_mib: float = 0.0,
    imported: tuple | None = None,
) -> RemoteRunner:
    """A worker with ``variant`` loaded from ``path`` and the test split in memory.

    ``code_root``/``label``: the same-job base's twin, run with the base revision's code (:mod:`qbench.gate.base`).
    ``costs``: also measure its import baseline, load time, resident set and first call (``RemoteRunner.costs``;
    :mod:`qbench.measure.costs`).  ``hold_mib``: an injected memory regression (:mod:`qbench.measure.inject`).
    ``imported``: a ``(worker, baseline)`` pair from :func:`start_imported_workers` to load into instead of a
    new worker.
    """
    from qbench import backends

    if imported is not None:
        worker, baseline = imported
    else:
        worker, baseline = Worker(label or variant, backends.get(variant).environment, code_root), None
    measured: dict = {}
    try:
        if costs:
            measured["baseline"] = baseline or worker.request(
                "load", "runtime_baseline", variant=variant, origins=backends.origins([variant])
            )
        info = worker.request(
            "load",
            "load",
            variant=variant,
            path=str(path),
            meta=meta,
            threads=threads,
            options=options,
            origins=backends.origins([variant]),
            **({"hold_mib": hold_mib} if hold_mib else {}),  # only when injected: a base revision's worker lacks it
        )
        if costs:
            measured["load"] = worker.request("load", "load_costs")
        worker.request("load", "test_inputs", **session_inputs)
    except QBenchError:
        if worker.crash is None:
            worker.close()
        raise
    runner = RemoteRunner(worker, info)
    runner.costs = measured or None
    return runner


def test_split_file(dataset, build_dir) -> tuple[str, int]:
    """One ``.npy`` of the uint8 test split in the build dir, and its image count.

    Named by the dataset's fingerprint and written atomically once, so every
    worker reads the same images without loading the dataset again.
    """
    import numpy as np

    from qbench.core.fsutil import atomic_path

    images, _ = dataset.test()
    path = Path(build_dir).resolve() / "inputs" / f"test-{dataset.fingerprint()[:20]}.npy"  # workers may start elsewhere
    if not path.is_file():
        with atomic_path(path) as tmp:
            np.save(tmp, np.ascontiguousarray(images), allow_pickle=False)
    return str(path), len(images)
