"""``qbench gatecheck --runs N [--mode stored|ab]``: measure the gate's false-alarm and detection rates here.

A gate is only worth having if it passes unmodified code and fails real
regressions.  Each run is a fresh ``pytest benchmarks/test_gate.py`` (a new
set of worker processes, as in real use).

``--mode ab`` checks the same-job gate (:mod:`qbench.gate.base`) and needs no
stored run: every run measures the candidate against ``--qbench-base``
(default ``HEAD``, so base = candidate when the tree is clean):

* N times unmodified: any failing verdict is a false alarm;
* N times with one candidate variant slowed by ``--slowdown`` (the injection
  is the candidate's only, never the base twin's), rotating over the variants;
* N times with ``--accuracy-loss`` of one candidate variant's test images
  turned wrong, rotating.

``--mode stored`` (the default) checks the stored-run gate against a
latency baseline it records first on this machine (in a scratch storage,
never ``baselines/``):

* N times unmodified: any failing verdict is a false alarm;
* N times with one variant slowed by ``--slowdown`` (default 1.3x),
  rotating over the variants: detected when that variant's latency fails
  (alternating with the unmodified runs; with ``--baseline rolling``, the
  default, each passing unmodified run is the baseline of the next two runs);
* N times with ``--accuracy-loss`` (default 2 pp) of one variant's test
  images turned wrong, rotating: detected when its accuracy verdict fails.

It prints a progress line per run and ends with
``false alarms a/N, slowdowns detected b/N, accuracy losses detected c/N``.
In either mode it refuses to report rates when the gate it checks never
engaged (no baseline recorded, no base built, a run gated in another mode),
and says why in one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qbench.core.errors import QBenchError


def _pytest(args: list[str], report_dir: Path, log: Path) -> dict:
    if report_dir.exists():
        shutil.rmtree(report_dir)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        f"--qbench-report-dir={report_dir}",
        *args,
    ]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("\n$ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    gate = report_dir / "gate.json"
    if rc not in (0, 1) or not gate.is_file():
        raise QBenchError(f"a gate run ended with exit code {rc} and no verdict; its output is in {log}")
    data = json.loads(gate.read_text(encoding="utf-8"))
    data["rc"] = rc
    return data


def _failed(run: dict) -> list[dict]:
    return [v for v in run["verdicts"] if not v["ok"]]


def _engaged(run: dict, mode: str, variants, check: str, what: str) -> None:
    """Refuse (one line) unless every variant got a ``check`` verdict from the mode being checked."""
    got = {v["variant"] for v in run["verdicts"] if v["check"] == check and v["against"].startswith(mode)}
    missing = [v for v in variants if v not in got]
    if missing:
        why = "; ".join(run.get("base_failures", {}).values()) or run["verdict"]
        raise QBenchError(
            f"{what}: the {mode} gate did not gate {check} of {', '.join(missing)} (gate mode: {run.get('mode')}); "
            f"no rates reported: {why}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qbench gatecheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each kind (default 20)")
    parser.add_argument("--slowdown", type=float, default=1.3, help="injected slowdown factor (default 1.3)")
    parser.add_argument(
        "--accuracy-loss", type=float, default=0.02, help="injected accuracy loss, fraction of the test split (default 0.02)"
    )
    parser.add_argument(
        "--variants", default=None, help="comma-separated variants to rotate over (default: all default variants)"
    )
    parser.add_argument(
        "--work-dir", default="build/gatecheck", help="scratch storage, reports and log (default build/gatecheck)"
    )
    parser.add_argument(
        "--baseline",
        choices=("rolling", "once"),
        default="rolling",
        help="rolling: each passing unmodified run is the next runs' baseline (base and candidate a minute apart, "
        "as in one CI job); once: every run against the first (default rolling)",
    )
    parser.add_argument(
        "--mode",
        choices=("stored", "ab"),
        default="stored",
        help="stored: against a latency run stored on this machine first; ab: against a same-job base (--base), "
        "no stored run needed (default stored)",
    )
    parser.add_argument("--base", default="HEAD", help="with --mode ab: the base revision (default HEAD)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.slowdown <= 1.0 or not 0.0 < args.accuracy_loss < 1.0:
        print("qbench: --runs must be >= 1, --slowdown > 1 and --accuracy-loss in (0, 1)", file=sys.stderr)
        return 2

    from qbench.config import parse_variants

    try:
        variants = parse_variants(args.variants)
    except QBenchError as exc:
        print(f"qbench: {exc}", file=sys.stderr)
        return 2
    work = Path(args.work_dir).resolve()
    storage = work / "storage"
    shutil.rmtree(storage, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "gatecheck.log"
    log.write_text("", encoding="utf-8")
    common = [f"--benchmark-storage=file://{storage}", f"--qbench-variants={','.join(variants)}", *args.pytest_args]
    t_start = time.perf_counter()

    def say(message: str) -> None:
        print(f"[gatecheck {time.perf_counter() - t_start:5.0f}s] {message}", flush=True)

    try:
        if args.mode == "ab":
            dirty = _clean_tree(args.base)
            if dirty:
                raise QBenchError(dirty)
            compare = ["benchmarks/test_gate.py", f"--qbench-base={args.base}", *common]
            counts = _three_kinds(args, variants, compare, [], "same-job base", None, work, log, say)
        else:
            compare, resave, accuracy = _record_stored_run(args, common, storage, work, log, say)
            counts = _three_kinds(args, variants, compare, resave, "stored run", accuracy, work, log, say)
    except QBenchError as exc:
        print(f"qbench: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("qbench: gatecheck interrupted", file=sys.stderr)
        return 130
    n = args.runs
    false_alarms, slow_hits, error_hits, withdrawn = counts
    print(f"false alarms {false_alarms}/{n}, slowdowns detected {slow_hits}/{n}, accuracy losses detected {error_hits}/{n}")
    print(f"(unmodified runs whose first campaign looked slower and a second campaign cleared: {withdrawn}/{n})")
    return 0


def _record_stored_run(args, common, storage: Path, work: Path, log: Path, say):
    """``--mode stored``: this machine's latency run, recorded first; the compare arguments and the accuracies."""
    say(f"recording this machine's latency baseline (log: {log})")
    base = _pytest(
        ["benchmarks/test_latency.py::test_latency", "benchmarks/test_gate.py", "--benchmark-save=gatecheck", *common],
        work / "base",
        log,
    )
    if base["rc"] != 0:
        raise QBenchError(f"the baseline run itself fails the gate: {base['verdict']}")
    if not list(storage.glob("*/*.json")):
        raise QBenchError(
            f"the baseline run stored no latency run ({_log_line(log, 'no baseline saved') or 'see ' + str(log)}); "
            "the stored-run gate never engaged, so no rates are reported (--mode ab needs no stored run)"
        )
    accuracy = {v["variant"]: v["figures"]["accuracy"] for v in base["verdicts"] if v["check"] == "accuracy"}
    if not accuracy:
        raise QBenchError("no stored accuracy baseline for this model: record one with pytest benchmarks --qbench-portable-save")
    compare = ["benchmarks/test_gate.py", "--benchmark-compare", *common]
    # rolling: every passing unmodified run becomes the baseline of the next runs, so base and candidate
    # are measured about a minute apart, as in a CI job that times the base commit, then the candidate
    resave = ["benchmarks/test_latency.py::test_latency", "--benchmark-save=gatecheck"] if args.baseline == "rolling" else []
    return compare, resave, accuracy


def _three_kinds(args, variants, compare, resave, mode: str, accuracy, work: Path, log: Path, say) -> tuple[int, ...]:
    """N unmodified runs and N with one variant slowed (alternating), then N with an accuracy loss.

    ``mode``: the gate mode every run must have gated in (else no rates, :func:`_engaged`); ``accuracy``:
    each variant's accuracy, or ``None`` to read it from the first unmodified run (same-job base).
    Injections are the candidate's only: with a same-job base the twins run unslowed and uncorrupted.
    """
    n = args.runs
    false_alarms = slow_hits = error_hits = withdrawn = 0
    for i in range(n):
        run = _pytest([*compare, *resave], work / "run", log)
        _engaged(run, mode, variants, "latency", f"unmodified run {i + 1}")
        if accuracy is None:
            _engaged(run, mode, variants, "accuracy", f"unmodified run {i + 1}")
            accuracy = {v["variant"]: v["figures"]["accuracy"] for v in run["verdicts"] if v["check"] == "accuracy"}
        bad = _failed(run)
        false_alarms += bool(bad)
        cleared = [v for v in run["verdicts"] if v["ok"] and "first" in v["figures"]]
        withdrawn += bool(cleared)
        say(
            f"unmodified {i + 1}/{n}: "
            + ("FALSE ALARM: " + "; ".join(v["line"] for v in bad) if bad else "pass")
            + (f" (after re-measuring: {'; '.join(v['line'] for v in cleared)})" if cleared else "")
        )
        victim = variants[i % len(variants)]
        run = _pytest([*compare, f"--qbench-inject-slowdown={victim}={args.slowdown}"], work / "run", log)
        _engaged(run, mode, [victim], "latency", f"slowdown run {i + 1}")
        hit = [v for v in _failed(run) if v["variant"] == victim and v["check"] == "latency"]
        others = [v for v in _failed(run) if v not in hit]
        slow_hits += bool(hit)
        mine = next(v for v in run["verdicts"] if v["variant"] == victim and v["check"] == "latency")
        say(
            f"slowdown {i + 1}/{n} ({victim} x{args.slowdown:g}): {'detected' if hit else 'MISSED'} "
            f"({mine['line'].split(': ', 1)[1]})"
            + (f"; also failed: {', '.join(v['variant'] + ' ' + v['check'] for v in others)}" if others else "")
        )
    rotation = [v for v in variants if v in accuracy]
    for i in range(n):
        victim = rotation[i % len(rotation)]
        fraction = min(1.0, args.accuracy_loss / max(accuracy[victim], 1e-9))  # of its correct predictions
        run = _pytest(
            [*compare, "-k", "accuracy_gate", "--benchmark-disable", f"--qbench-inject-error={victim}={fraction:.6f}"],
            work / "run",
            log,
        )
        _engaged(run, mode, [victim], "accuracy", f"accuracy run {i + 1}")
        hit = [v for v in _failed(run) if v["variant"] == victim and v["check"] == "accuracy"]
        error_hits += bool(hit)
        mine = next(v for v in run["verdicts"] if v["variant"] == victim and v["check"] == "accuracy")
        say(f"accuracy loss {i + 1}/{n} ({victim} -{args.accuracy_loss:.0%}): {'detected' if hit else 'MISSED'} ({mine['line']})")
    return false_alarms, slow_hits, error_hits, withdrawn


def _log_line(log: Path, needle: str) -> str:
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if needle in ln]
    return lines[-1].removeprefix("[qbench] ") if lines else ""


def _clean_tree(base: str) -> str | None:
    """Why base = candidate does not hold (tracked files differ from ``base``), or ``None``."""
    proc = subprocess.run(["git", "diff", "--quiet", base, "--", "."], capture_output=True, check=False)
    if proc.returncode == 1:
        return f"the working tree differs from {base}: base = candidate would not hold (commit first, or pass --base)"
    return None


if __name__ == "__main__":
    sys.exit(main())
