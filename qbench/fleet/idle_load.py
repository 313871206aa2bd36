"""Does a fleet worker's mere presence slow the machine it measures?  ``python -m qbench.fleet.idle_load --runs 5``.

A Dask worker sits on every fleet machine between runs: its event loop,
heartbeats to the scheduler and memory monitor.  This tool times
``native`` (the slowest default variant, so the most exposed to lost CPU
time) in plain ``pytest`` runs, alternately with and without an idle Dask
scheduler and worker running on this machine (bound to 127.0.0.1; the
scheduler is here too, the worst case: on a real fleet it runs elsewhere),
interleaved so that drift hits both alike, and prints each run's median
and the ratio of the two medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qbench.fleet.identity import checkout_root
from qbench.fleet.quiet_worker import quiet_env, worker_command


def _native_median(build: str, report: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_latency.py"]
    cmd += ["--qbench-variants=native", f"--qbench-build-dir={build}", f"--qbench-report-dir={report}", *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=checkout_root(), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"qbench idle_load: the timing run failed: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
    rows = json.loads((report / "summary.json").read_text())["rows"]
    return next(r["median_latency_ms"] for r in rows if r["variant"] == "native")


def _idle_worker(tmp: Path, quiet_worker: bool) -> list[subprocess.Popen]:
    """An idle scheduler and worker on 127.0.0.1, registered before it returns."""
    from distributed import Client

    info = tmp / "scheduler.json"
    info.unlink(missing_ok=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sched = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    sched += ["--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)]
    procs = [subprocess.Popen(sched, **quiet)]
    while not info.exists() or not info.read_text().strip():
        time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    worker = worker_command(address, ["--name", "idle", "--host", "127.0.0.1"])
    procs.append(subprocess.Popen(worker, env=quiet_env() if quiet_worker else None, **quiet))
    with Client(scheduler_file=str(info), set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
    time.sleep(2.0)  # past start-up, into the idle steady state
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.fleet.idle_load", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs with and runs without the idle worker (default 5 each)")
    parser.add_argument("--build-dir", default="build", help="the build dir (warm it first: pytest benchmarks)")
    parser.add_argument(
        "--dask-defaults", action="store_true", help="a plain dask worker, not qbench fleet-worker's quiet settings"
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest options for each timing run (after --)")
    args = parser.parse_args(argv)
    medians: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for with_worker in (False, True) if i % 2 == 0 else (True, False):
                procs = _idle_worker(Path(tmp), not args.dask_defaults) if with_worker else []
                try:
                    median = _native_median(args.build_dir, Path(tmp) / "report", args.pytest_args)
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait(timeout=30)
                medians[with_worker].append(median)
                print(f"run {i + 1} {'with   ' if with_worker else 'without'} an idle Dask worker: native median {median:.4f} ms")
    with_, without = statistics.median(medians[True]), statistics.median(medians[False])
    pairs = [w / wo for w, wo in zip(medians[True], medians[False], strict=True)]  # run i's two, measured back to back
    kind = "plain dask worker (Dask's defaults)" if args.dask_defaults else "qbench fleet-worker (quiet settings)"
    print(
        f"{kind}: native median over {args.runs} runs each: {with_:.4f} ms with an idle worker, {without:.4f} ms without; "
        f"ratio {with_ / without:.3f} (range of the runs: with {min(medians[True]):.4f}-{max(medians[True]):.4f}, "
        f"without {min(medians[False]):.4f}-{max(medians[False]):.4f} ms); paired ratios (with/without, run by run) "
        f"{', '.join(f'{r:.3f}' for r in pairs)}, median {statistics.median(pairs):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
