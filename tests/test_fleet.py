"""The fleet (``--qbench-fleet``): a Dask scheduler and workers on 127.0.0.1, one worker killed mid-run, faults.

The cluster is real (a ``LocalCluster`` scheduler and ``qbench fleet-worker``
processes, as on real machines), bound to 127.0.0.1 only, started and
stopped inside this module.  All workers share this one machine, so the
host-wide lock serialises their runs: the test checks that from their
timestamps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qbench.fleet import bundle
from qbench.fleet.driver import forwarded_args
from qbench.fleet.identity import difference, identity
from qbench.fleet.merged_report import passed, write
from tests.helpers import REPO, run_pytest

distributed = pytest.importorskip("distributed", reason="the fleet needs the [fleet] extra: pip install -e .[fleet]")

VARIANTS = ("native", "tflite-int8", "tvm-avx2-int8")  # the reference, a shipped LiteRT model, one compiled on each machine
FLEET_TESTS = ("benchmarks/test_latency.py", "benchmarks/test_gate.py")  # accuracy and latency, gated (CI minutes count)
WORKERS = ("alpha", "beta", "victim")


# ---- pieces, without a cluster -------------------------------------------------------------------------------


def test_forwarded_args_drop_what_each_machine_sets_and_ship_the_files_options_name(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    args = [
        "benchmarks/test_latency.py::test_latency",
        "--qbench-fleet",
        "tcp://127.0.0.1:8786",
        "--qbench-fleet-timeout=60",
        "--qbench-build-dir=/somewhere",
        "--benchmark-storage",
        "file:///x",
        "--qbench-base-model",
        str(model),
        "-k",
        "latency",
        "--qbench-variants=native",
    ]
    out, files = forwarded_args(args, REPO, REPO)
    assert out == ["benchmarks/test_latency.py::test_latency", "-k", "latency", "--qbench-variants=native"]
    assert files == {"--qbench-base-model": model.resolve()}


def test_a_worker_with_other_versions_or_code_is_told_apart_in_words():
    mine = identity()
    assert difference(mine, dict(mine)) is None
    assert difference(mine, mine | {"tensorflow": "2.20.0"}) == f"tensorflow {mine['tensorflow']} on the driver, 2.20.0 here"
    assert "source hash" in difference(mine, mine | {"sources": "0" * 16})


def test_the_bundle_leaves_cpu_specific_artifacts_behind_and_refuses_damaged_files(tmp_path):
    build = tmp_path / "build"
    (build / "variants" / "k").mkdir(parents=True)
    (build / "report").mkdir()
    for name in ("tflite-int8-0123456789ab.tflite", "tflite-int8-0123456789ab.tflite.json", "tvm-avx2-int8-0123456789ab.so"):
        (build / "variants" / "k" / name).write_bytes(name.encode())
    (build / "variants" / "k" / "tvm-avx2-int8-0123456789ab.so.json").write_text("{}")
    (build / "variants" / "k" / "tflite-int8-0123456789ab.tflite.lock").write_text("")
    (build / "report" / "summary.json").write_text("{}")
    packed = bundle.pack(build, ("tvm-avx2-int8",))
    assert sorted(packed) == ["variants/k/tflite-int8-0123456789ab.tflite", "variants/k/tflite-int8-0123456789ab.tflite.json"]
    dest = tmp_path / "worker"
    assert bundle.unpack(packed, dest) == 2 and bundle.unpack(packed, dest) == 0  # the second time: nothing new
    rel = "variants/k/tflite-int8-0123456789ab.tflite"
    damaged = {rel: (packed[rel][0], b"not what was sent")}
    with pytest.raises(Exception, match="arrived damaged"):
        bundle.unpack(damaged, dest)
    with pytest.raises(Exception, match="not a path inside"):
        bundle.unpack({"../escape": (hashlib.sha256(b"x").hexdigest(), b"x")}, dest)


def test_the_merged_report_says_what_happened_to_each_machine(tmp_path):
    def outcome(name, status, why=None, ok=True):
        summary = {"rows": [{"variant": "native", "median_latency_ms": 1.0, "median_ci_low_ms": 0.9, "median_ci_high_ms": 1.1}]}
        gate = {"verdict": f"qbench gate: {'PASS' if ok else 'FAIL'}", "mode": "same-job base x", "passed": ok}
        gate["verdicts"] = [{"variant": "native", "ok": ok, "line": "native: p10 latency 1.0x base"}]
        files = {"summary.json": json.dumps(summary).encode(), "gate.json": json.dumps(gate).encode()}
        files = files if status == "measured" else {}
        return {
            "name": name,
            "status": status,
            "why": why,
            "machine_id": f"id-{name}",
            "files": files,
            "exit_code": 0 if ok else 1,
        }

    out = tmp_path / "fleet"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier fleet run")
    merged = write(out, [outcome("a", "measured"), outcome("b", "lost", "lost: its worker left")], {})
    assert not passed(merged)
    assert merged["cells"]["native"]["a-id-a"]["verdict"] == "PASS" and "b-id-b" not in merged["cells"]["native"]
    assert "lost: its worker left" in (out / "summary.md").read_text() and "lost" in (out / "index.html").read_text()
    assert not (out / "stale.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["fleet"]  # swapped in whole
    assert not passed(write(out, [outcome("a", "measured", ok=False)], {}))
    assert passed(write(out, [outcome("a", "measured")], {}))


def test_an_unreachable_scheduler_is_one_line_and_a_usage_error():
    proc = run_pytest(
        "benchmarks/test_latency.py", "--qbench-fleet=tcp://127.0.0.1:9", "--qbench-fleet-timeout=3", "--qbench-profile=smoke"
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert out.count("qbench: fleet: cannot reach the Dask scheduler at tcp://127.0.0.1:9") == 1, out[-2000:]
    assert "Traceback" not in out


# ---- a real cluster on 127.0.0.1 --------------------------------------------------------------------------------


def _listening_addresses(pids) -> set[str]:
    """Local IPv4/IPv6 addresses of the LISTEN sockets the processes ``pids`` hold (from /proc, no tools needed)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                hex_ip = fields[1].split(":")[0]
                if len(hex_ip) == 8:
                    found.add(".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add("ipv6:" + hex_ip)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler (LocalCluster, no workers of its own) and three ``dask worker`` processes offering ``qbench``."""
    from distributed import Client, LocalCluster

    home = tmp_path_factory.mktemp("fleet-home")
    env = dict(os.environ, QBENCH_FLEET_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    logs = tmp_path_factory.mktemp("fleet-logs")
    with LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address="127.0.0.1:0", processes=True) as lc:
        address = lc.scheduler_address
        assert address.startswith("tcp://127.0.0.1:"), address
        workers = {}
        for name in WORKERS:
            # what docs/fleet.md tells a machine to run: dask worker, one thread, the qbench resource, quiet settings
            cmd = [sys.executable, "-m", "qbench.cli", "fleet-worker", address, "--name", name]
            cmd += ["--host", "127.0.0.1", "--no-nanny"]
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed when the worker is stopped below
            workers[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(len(WORKERS), timeout=120)
            listening = {w["host"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
        assert listening == {"127.0.0.1"}
        # nothing the test started listens on any other address (scheduler in this process, the workers)
        assert _listening_addresses([os.getpid(), *(p.pid for p, _ in workers.values())]) == {"127.0.0.1"}
        try:
            yield {"address": address, "home": home, "env": env, "workers": workers}
        finally:
            for proc, log in workers.values():
                if proc.poll() is None:
                    proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.close()


def _driver(cluster: dict, build: Path, *extra: str, kill: str | None = None) -> tuple[str, int, float | None]:
    """Run ``pytest ... --qbench-fleet``; with ``kill``, SIGKILL that worker once it says it is measuring."""
    model = next(build.glob("models/*/model.keras"))
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *FLEET_TESTS, "--qbench-profile=smoke"]
    cmd += [f"--qbench-variants={','.join(VARIANTS)}", "--benchmark-max-time=0.1", f"--qbench-build-dir={build}"]
    cmd += ["--qbench-cost-samples=0", "--qbench-calibration-fractions=none", "--qbench-throughput-batches=none"]
    # the same file as model and base: the twins share the candidate's artifacts, so each machine compiles TVM once
    cmd += [f"--qbench-model-path={model}", f"--qbench-base-model={model}", f"--qbench-fleet={cluster['address']}", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(900, proc.kill)
    watchdog.start()
    lines, killed_at = [], None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            found = re.search(rf"fleet: {kill}: measuring on \S+ \(worker pid (\d+)", line) if kill else None
            if found and killed_at is None:
                time.sleep(3)  # inside its run: pytest started, the model loading
                os.kill(int(found.group(1)), signal.SIGKILL)
                killed_at = time.time()
        rc = proc.wait()
    finally:
        watchdog.cancel()
    return "".join(lines), rc, killed_at


@pytest.fixture(scope="module")
def fleet_run(cluster, smoke_run, tmp_path_factory):
    """The smoke profile on alpha, beta and victim, gated against a same-job base; victim is killed mid-run."""
    build = tmp_path_factory.mktemp("fleet-driver") / "build"
    shutil.copytree(smoke_run[0], build, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    # the driver's cache gets the smoke model's variants as a user model (what --qbench-model-path builds), TVM
    # included; beta starts from that cache (a machine that ran before), alpha from nothing but what is shipped
    model = next(build.glob("models/*/model.keras"))
    prep = [sys.executable, "-m", "qbench.cli", "prepare", "--profile", "smoke", "--model-path", str(model)]
    prep += ["--build-dir", str(build), "--variants", ",".join(VARIANTS), "--calibration-fractions", "none"]
    subprocess.run(prep, cwd=REPO, env=cluster["env"], check=True, capture_output=True)
    shutil.copytree(build, cluster["home"] / "beta" / "build", ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    started = time.time()
    out, rc, killed_at = _driver(cluster, build, kill="victim")
    fleet = build / "report" / "fleet"
    return {"out": out, "rc": rc, "killed_at": killed_at, "fleet": fleet, "started": started, "build": build}


def _machines(fleet: Path) -> dict[str, dict]:
    return {m["name"]: m for m in json.loads((fleet / "summary.json").read_text())["machines"]}


def test_the_fleet_merges_every_machine_every_variant_and_each_machines_own_verdicts(fleet_run, cluster):
    out, fleet = fleet_run["out"], fleet_run["fleet"]
    merged = json.loads((fleet / "summary.json").read_text())
    machines = _machines(fleet)
    assert set(machines) == set(WORKERS), out[-3000:]
    assert merged["variants"] == list(VARIANTS)
    for name in ("alpha", "beta"):
        m = machines[name]
        log = (cluster["home"] / name / "last-run.log").read_text()
        assert m["status"] == "measured" and m["passed"] and m["gate_passed"] is True, (m, out[-3000:])
        assert m["gate_mode"].startswith("same-job base"), m  # gated against its own base, measured on that machine
        assert m["machine_id"] and m["isa_class"] and m["host"]
        own = fleet / "machines" / m["key"]
        for f in ("summary.json", "gate.json", "index.html", "measurements.json"):
            assert (own / f).is_file(), (name, f)
        raw = json.loads((own / "measurements.json").read_text())["variants"]
        for variant in VARIANTS:
            cell = merged["cells"][variant][m["key"]]
            assert cell["median_ms"] > 0 and cell["ci_ms"][0] <= cell["median_ms"] <= cell["ci_ms"][1], (variant, cell)
            assert cell["verdict"] == "PASS" and cell["verdict_lines"], (variant, cell)  # accuracy and latency, per machine
            assert len(raw[variant]["y_pred"]) == len(raw[variant]["y_true"]) > 0 and raw[variant]["latency_ms"]
        # alpha compiled TVM itself (the driver ships no .so); neither rebuilt the shipped model or .tflite
        built = re.findall(r"building (\S+) -> ", log)  # its own and its base twin's builds
        assert built == (["tvm-avx2-int8"] if name == "alpha" else []), (name, built, log[-3000:])
    so = list((cluster["home"] / "alpha" / "build" / "variants").glob("*/tvm-avx2-int8-*.so"))
    assert so and all(p.stat().st_mtime > fleet_run["started"] for p in so), so
    page = (fleet / "index.html").read_text()
    assert all(v in page for v in VARIANTS) and all(n in page for n in WORKERS)
    assert (fleet / "figures" / "latency_per_machine.png").stat().st_size > 1000
    # one machine, one measurement at a time: the runs on this host never overlap
    spans = sorted((machines[n]["started"], machines[n]["ended"]) for n in ("alpha", "beta"))
    assert spans[0][1] <= spans[1][0], spans


def test_a_worker_killed_mid_run_is_lost_and_everything_else_is_reported(fleet_run):
    out, fleet = fleet_run["out"], fleet_run["fleet"]
    assert fleet_run["killed_at"] is not None, out[-3000:]
    assert fleet_run["rc"] == 1, out[-3000:]
    victim = _machines(fleet)["victim"]
    assert victim["status"] == "lost" and "left the scheduler mid-run" in victim["why"], victim
    assert out.count("qbench fleet: victim (") == 1 and "lost: its worker left the scheduler mid-run" in out
    assert "| (machine) |" in (fleet / "summary.md").read_text()
    assert "Traceback" not in out
    leftovers = [p for p in fleet.parent.iterdir() if p.name.startswith(".fleet-")]
    assert not leftovers, leftovers
    for path in fleet.rglob("*.json"):
        json.loads(path.read_text())  # every JSON the driver wrote is whole


def test_a_run_past_the_fleet_timeout_is_killed_and_its_column_says_so(fleet_run, cluster):
    out, rc, _ = _driver(cluster, fleet_run["build"], "--qbench-fleet-timeout=2")
    assert rc == 1, out[-3000:]
    machines = _machines(fleet_run["fleet"])
    assert {n: m["status"] for n, m in machines.items()} == {"alpha": "timed out", "beta": "timed out"}, out[-3000:]
    assert all(m["why"] == "timed out: its run was killed after 2 s" for m in machines.values())
    # the killed runs left no measuring process behind: the next machine run got the host lock
    assert len(re.findall(r"fleet: \w+: measuring on ", out)) == 2, out[-3000:]
