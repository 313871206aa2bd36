"""What runs on each fleet machine, inside its Dask worker: check, unpack, measure under a host-wide lock, send back.

The task does not measure in the Dask worker's process: it runs the same
``pytest`` benchmark a local user would, in a child process, from this
machine's own checkout, with this machine's own build dir, stored runs and
baselines (under ``$QBENCH_FLEET_HOME/<worker name>/``, default
``~/.cache/qbench-fleet``).  So each machine measures in its own isolated
workers exactly as a local run does, and is gated against its own stored
run or same-job base, never another machine's.

Exclusive measurement: the Dask ``qbench`` resource runs one task at a time
per *worker*; a host-wide file lock (in the machine's temp dir) makes it one
at a time per *machine*, also when several workers share a machine.  The
child dies with its worker (``PR_SET_PDEATHSIG``), so a killed worker leaves
no run measuring on behind it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qbench.core.errors import QBenchError, one_line
from qbench.core.fsutil import sha256_of
from qbench.fleet.bundle import unpack
from qbench.fleet.identity import checkout_root, difference, identity
from qbench.measure.worker import die_with_parent

#: report files sent back to the driver (relative to the machine's report dir)
REPORT_FILES = ("summary.json", "summary.md", "gate.json", "index.html", "measurements.json")
HOST_LOCK = "qbench-fleet-measure.lock"
TOPIC = "qbench-fleet"  # the Dask event topic the driver relays as progress lines


def fleet_home(worker_name: str) -> Path:
    """This worker's own directory: build cache, stored runs, baselines, the last run's log."""
    root = Path(os.environ.get("QBENCH_FLEET_HOME") or Path.home() / ".cache" / "qbench-fleet")
    return root / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(worker_name))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _collect(report: Path) -> dict[str, bytes]:
    files = {name: (report / name).read_bytes() for name in REPORT_FILES if (report / name).is_file()}
    for png in sorted((report / "figures").glob("*.png")):
        files[f"figures/{png.name}"] = png.read_bytes()
    return files


def _child_env(worker_name) -> dict:
    """The environment a local run has: without the thread caps a Dask nanny sets for its workers (OMP_NUM_THREADS=1 ...)."""
    import dask

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", QBENCH_FLEET_MACHINE=str(worker_name))
    for name, value in (dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}).items():
        if env.get(name) == str(value):
            del env[name]
    return env


@contextlib.contextmanager
def _host_lock(path: Path, wanted, waiting):
    """The machine-wide measurement lock (``flock``: the kernel drops it however its holder dies); yields False if the
    task was cancelled while waiting for it."""
    import fcntl

    with open(path, "a+b") as fh:
        told = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wanted():
                    yield False
                    return
                if not told:
                    waiting()
                    told = True
                time.sleep(0.5)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path, env: dict, log: Path, timeout: float, wanted) -> int | str | None:
    """The machine's pytest run; its exit code, ``None`` if it ran past ``timeout``, ``"cancelled"`` if the task was."""
    deadline = time.monotonic() + timeout
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, start_new_session=True
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    if not wanted():
                        return "cancelled"
                    if time.monotonic() > deadline:
                        return None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its isolated workers
                proc.wait()


def measure_here(job: dict, bundle: dict) -> dict:
    """Run the benchmark on this machine; returns its status, timestamps, fingerprint and report files."""
    from distributed import get_worker

    from qbench.gate import fingerprint

    worker = get_worker()
    out = {"name": str(worker.name), "address": worker.address, "host": socket.gethostname(), "pid": os.getpid()}
    fp = fingerprint.fingerprint()
    out |= {"fingerprint": fp, "machine_id": fingerprint.machine_id(fp), "machine": fingerprint.describe(fp)}
    why = difference(job["identity"], identity())
    root = checkout_root()
    if why is None and not (root / "benchmarks").is_dir():
        why = f"no benchmarks/ beside qbench in {root} (a fleet worker runs from a source checkout)"
    if why is not None:
        return out | {"status": "refused", "why": f"refused: {why}"}
    home = fleet_home(worker.name)
    build, report = home / "build", home / "report"
    try:
        build.mkdir(parents=True, exist_ok=True)
        out["shipped_files_written"] = unpack(bundle, build)
        for rel, digest in job.get("shipped", {}).items():
            if sha256_of(build / rel) != digest:
                return out | {"status": "refused", "why": f"refused: {rel}'s hash differs from the driver's after shipping"}
    except (OSError, QBenchError) as exc:
        return out | {"status": "failed", "why": f"could not unpack the shipped artifacts: {one_line(exc, 200)}"}
    args = [a.replace("{fleet_build}", str(build)) for a in job["args"]]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    cmd += [f"--qbench-build-dir={build}", f"--qbench-report-dir={report}"]
    cmd += [f"--benchmark-storage=file://{home / 'storage'}", f"--qbench-baseline-dir={home / 'baselines'}"]
    log = home / "last-run.log"
    asked = time.time()
    key = worker.get_current_task()

    def say(message: str) -> None:
        worker.log_event(TOPIC, {"token": job.get("token"), "text": f"{worker.name}: {message}"})

    def wanted() -> bool:
        """False once the driver cancelled this task or went away (Dask releases a disconnected client's tasks)."""
        try:
            ts = worker.state.tasks.get(key)
            return ts is not None and ts.state not in ("cancelled", "released", "forgotten")
        except Exception:  # Dask's worker state is not public API: if it moved, never cancel on its account
            return True

    rc: int | str | None = "cancelled"
    started = ended = None
    busy = f"waiting: another qbench run is measuring on {out['host']}"
    with _host_lock(Path(tempfile.gettempdir()) / HOST_LOCK, wanted, lambda: say(busy)) as held:
        why = difference(job["identity"], identity()) if held else None  # the checkout may have changed while it waited
        if why is not None:
            return out | {"status": "refused", "why": f"refused: {why}"}
        if held:
            started = time.time()
            say(f"measuring on {out['host']} (worker pid {out['pid']}, {out['machine_id']})")
            shutil.rmtree(report, ignore_errors=True)  # never send back an earlier run's report as this one's
            rc = _run(cmd, root, _child_env(worker.name), log, job["timeout"], wanted)
            ended = time.time()
            say(f"run ended after {ended - started:.0f} s ({'pytest exit ' + str(rc) if isinstance(rc, int) else rc})")
    ran = started is not None
    out |= {"waited_s": started - asked if ran else None, "started": started, "ended": ended}
    out |= {"exit_code": rc if isinstance(rc, int) else None, "log_tail": _tail(log) if ran else ""}
    out["files"] = _collect(report) if ran else {}
    if rc == "cancelled":
        return out | {"status": "cancelled", "why": "cancelled: the driver cancelled the run or went away"}
    if rc is None:
        return out | {"status": "timed out", "why": f"timed out: its run was killed after {job['timeout']:g} s"}
    if rc not in (0, 1):  # 1: tests (gate) failed, a measured outcome; anything else: the run did not complete
        last = next((ln for ln in reversed(out["log_tail"].splitlines()) if ln.strip()), "no output")
        return out | {"status": "failed", "why": f"its pytest exited {rc}: {one_line(last, 200)}"}
    return out | {"status": "measured", "why": None}
