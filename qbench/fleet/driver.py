"""The fleet's driver: build once, ship, run on every ``qbench`` worker at once, watch for faults, merge.

Dask distributed does the transport and the placement: each machine's task
is pinned to its worker (``workers=[address]``, no other worker allowed)
and needs the ``qbench`` resource, so a worker runs one qbench measurement
at a time (:mod:`qbench.fleet.on_worker` makes it one per machine).  The
driver polls: a worker that leaves the scheduler while its task runs
(killed, crashed, unreachable) is *lost*; one that does not answer within
``--qbench-fleet-timeout`` (plus start-up grace) has *timed out*; both are
one line in that machine's column, and every other machine's results are
still merged and written.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from qbench.core.errors import QBenchError, one_line
from qbench.core.fsutil import sha256_of
from qbench.fleet import bundle as shipping
from qbench.fleet.identity import identity
from qbench.fleet.merged_report import passed, write
from qbench.fleet.on_worker import TOPIC, measure_here

Progress = Callable[[str], None]
RESOURCE = "qbench"
#: options the driver sets per machine, never forwarded as given
LOCAL_OPTIONS = (
    "--qbench-fleet",
    "--qbench-fleet-timeout",
    "--qbench-build-dir",
    "--qbench-report-dir",
    "--qbench-baseline-dir",
    "--benchmark-storage",
)
#: options that name a file on the driver: the file is shipped and the option points at the shipped copy
SHIPPED_FILES = ("--qbench-model-path", "--qbench-base-model")
LOST = "lost: its worker left the scheduler mid-run (killed, crashed or unreachable)"
GRACE_S = 300.0  # unpacking and start-up on top of the run's own timeout


def forwarded_args(args: list[str], invocation_dir: Path, rootdir: Path) -> tuple[list[str], dict[str, Path]]:
    """The driver's pytest arguments as a worker's pytest takes them, and the files to ship.

    Fleet and per-machine options are dropped, test paths made relative to
    the checkout (each worker runs from its own), and the options of
    :data:`SHIPPED_FILES` returned as ``option -> driver path``.
    """
    out, shipped, skip = [], {}, None
    for arg in args:
        if skip is not None:
            if skip in SHIPPED_FILES:
                shipped[skip] = (invocation_dir / arg).resolve()
            skip = None
            continue
        name, eq, value = arg.partition("=")
        if name in LOCAL_OPTIONS or name in SHIPPED_FILES:
            if not eq:
                skip = name
            elif name in SHIPPED_FILES:
                shipped[name] = (invocation_dir / value).resolve()
            continue
        path = (invocation_dir / arg.split("::", 1)[0]).resolve()
        if not arg.startswith("-") and path.exists() and path.is_relative_to(rootdir):
            arg = str(path.relative_to(rootdir)) + (("::" + arg.split("::", 1)[1]) if "::" in arg else "")
        out.append(arg)
    return out, shipped


def offering_workers(client) -> dict[str, str]:
    """``address -> name`` of the scheduler's workers that offer the ``qbench`` resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: str(w.get("name", addr)) for addr, w in workers.items() if w.get("resources", {}).get(RESOURCE, 0) >= 1}


def prepare_shippable(settings, progress: Progress) -> dict:
    """Build the model and every CPU-independent selected variant here (``qbench prepare --manifest``)."""
    from qbench import backends
    from qbench.config import settings_to_argv

    portable = [v for v in settings.variants if not backends.get(v).target_specific and not backends.get(v).unavailable()]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.json"
        cmd = [sys.executable, "-m", "qbench.measure.prepare", *settings_to_argv(settings)]
        cmd += ["--variants", ",".join(portable) or "none", "--manifest", str(manifest)]
        if settings.study_fractions:
            cmd.append("--calibration-study")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            progress(f"fleet: {line.removeprefix('[qbench] ')}")
        if proc.returncode != 0 or not manifest.is_file():
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise QBenchError(f"fleet: building the shipped artifacts on the driver failed: {one_line(last[0], 300)}")
        import json

        return json.loads(manifest.read_text())


def _connect(address: str, timeout: float):
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise QBenchError(f"fleet: cannot reach the Dask scheduler at {address}: {one_line(exc, 200)}") from None


def _job(manifest: dict, args: list[str], files: dict[str, Path], timeout: float, build: Path) -> tuple[dict, dict]:
    """The task's instructions and the files it ships (CPU-independent artifacts, and the files options name)."""
    from qbench import backends

    target_specific = tuple(v.name for v in backends.all_variants() if v.target_specific)
    payload = shipping.pack(build, target_specific)
    job = {"identity": identity(), "args": list(args), "timeout": timeout, "model_key": manifest["model_key"]}
    job["token"] = uuid.uuid4().hex[:12]  # this run's tasks and progress events
    job["shipped"] = {}
    for option, path in files.items():
        rel = f"shipped/{option.lstrip('-')}/{path.name}"
        payload[rel] = (sha256_of(path), path.read_bytes())
        job["args"].append(f"{option}={{fleet_build}}/{rel}")
        job["shipped"][rel] = payload[rel][0]
    return job, payload


def _lost(name: str, address: str, why: str) -> dict:
    return {"name": name, "address": address, "status": why.split(":", 1)[0], "why": why}


def _model_mismatch(outcome: dict, model_key: str) -> dict:
    """A machine whose run measured another model than the driver's is refused, not merged."""
    import json

    summary = outcome.get("files", {}).get("summary.json")
    if outcome["status"] != "measured" or summary is None:
        return outcome
    try:
        theirs = json.loads(summary).get("environment", {}).get("model_key")
    except ValueError:
        return outcome
    if theirs not in (None, model_key):
        return outcome | {"status": "refused", "why": f"refused: it measured model {theirs}, the driver's is {model_key}"}
    return outcome


def run_fleet(address: str, timeout: float, settings, args: list[str], files: dict[str, Path], progress: Progress) -> dict:
    """Run the benchmark on every ``qbench`` worker of the scheduler at ``address``; write and return the merged report."""
    client = _connect(address, timeout=min(30.0, timeout))
    try:
        machines = offering_workers(client)
        if not machines:
            raise QBenchError(
                f"fleet: no worker of the scheduler at {address} offers the {RESOURCE} resource "
                f"(start one with: dask worker {address} --resources {RESOURCE}=1 --nthreads 1)"
            )
        progress(f"fleet: {len(machines)} machine(s) at {address}: {', '.join(sorted(machines.values()))}")
        manifest = prepare_shippable(settings, progress)
        job, payload = _job(manifest, args, files, timeout, settings.build_dir)
        progress(f"fleet: shipping {len(payload)} CPU-independent file(s), {shipping.size(payload) / 2**20:.1f} MiB")
        [shipped] = client.scatter([payload], workers=list(machines), broadcast=True, hash=False)
        token = job["token"]
        futures = {
            addr: client.submit(
                measure_here,
                job,
                shipped,
                key=f"qbench-fleet-{name}-{token}",
                workers=[addr],
                allow_other_workers=False,
                resources={RESOURCE: 1},
                pure=False,
                retries=0,
            )
            for addr, name in machines.items()
        }
        outcomes = _watch(client, futures, machines, timeout + GRACE_S, token, progress)
    finally:
        client.close()
    outcomes = [_model_mismatch(o, manifest["model_key"]) for o in outcomes]
    out_dir = settings.reports / "fleet"
    merged = write(out_dir, outcomes, {"address": address, "identity": job["identity"], "model_key": manifest["model_key"]})
    merged["path"] = str(out_dir)
    merged["passed"] = passed(merged)
    return merged


def _watch(client, futures: dict, machines: dict[str, str], limit: float, token: str, progress: Progress) -> list[dict]:
    """Wait for every machine; a worker that leaves mid-run is lost, one past ``limit`` seconds has timed out."""
    started, seen, results = time.monotonic(), set(), {}
    pending = dict(futures)
    while pending:
        time.sleep(1.0)
        for stamp, message in client.get_events(TOPIC):
            if isinstance(message, dict) and message.get("token") == token and (stamp, message["text"]) not in seen:
                seen.add((stamp, message["text"]))
                progress(f"fleet: {message['text']}")
        alive = set(client.scheduler_info(n_workers=-1)["workers"])
        for addr, future in list(pending.items()):
            name = machines[addr]
            if future.done():
                try:
                    results[addr] = future.result()
                except Exception as exc:  # the task raised, or Dask gave up on it when its worker died
                    if addr not in alive or type(exc).__name__ in ("KilledWorker", "CancelledError", "FutureCancelledError"):
                        results[addr] = _lost(name, addr, LOST)
                    else:
                        results[addr] = _lost(name, addr, f"failed: {type(exc).__name__}: {one_line(exc, 200)}")
            elif addr not in alive:
                results[addr] = _lost(name, addr, LOST)
                future.cancel()
            elif time.monotonic() - started > limit:
                results[addr] = _lost(name, addr, f"timed out: no answer after {limit:.0f} s")
                future.cancel()
            else:
                continue
            del pending[addr]
            why = results[addr].get("why")
            progress(f"fleet: {name}: {results[addr]['status']}" + (f" ({why})" if why else ""))
    return [results[addr] for addr in machines]
