"""The gate's voice in a pytest run: the verdict line, and baselines written only by passing runs.

pytest-benchmark's own ``--benchmark-compare-fail`` compares absolute times
against whatever run it loaded and ends in a traceback; here its failure (or
its complaint that there is nothing to compare with) becomes one line, and
the verdict that counts is qbench's (:mod:`qbench.gate.verdicts`).
"""

from __future__ import annotations

import pytest

from qbench.gate import fingerprint

COMPARE_FAIL_KEY = pytest.StashKey[bool]()


def contain_benchmark_compare_fail(config: pytest.Config) -> None:
    """Turn pytest-benchmark's ``check_regressions`` traceback into one line and an exit status."""
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "compare_fail", None):
        return
    from pytest_benchmark.session import PerformanceRegression

    original = bs.check_regressions

    def check_regressions():
        tr = config.pluginmanager.get_plugin("terminalreporter")
        try:
            original()
        except pytest.UsageError:
            if tr:
                tr.write_line(
                    "qbench: --benchmark-compare-fail ignored: no stored run for this machine's fingerprint "
                    "(qbench's gate: --qbench-base, or a stored run, gates latency)",
                    yellow=True,
                )
        except PerformanceRegression:
            if tr:
                tr.write_line("qbench: pytest-benchmark's --benchmark-compare-fail found a regression (lines above)", red=True)
            config.stash[COMPARE_FAIL_KEY] = True

    bs.check_regressions = check_regressions


def store_runs_atomically(config: pytest.Config) -> None:
    """pytest-benchmark writes a stored run with a plain ``open(..., "wb")``: a run killed mid-write left half a
    JSON file that every later ``--benchmark-compare`` tripped over.  Its file storage writes through
    :func:`qbench.core.fsutil.atomic_write_bytes` instead (same name, same bytes)."""
    bs = getattr(config, "_benchmarksession", None)
    storage = getattr(bs, "storage", None)
    from pytest_benchmark.storage.file import FileStorage

    if not isinstance(storage, FileStorage):
        return
    from pytest_benchmark.utils import safe_dumps

    from qbench.core.fsutil import atomic_write_bytes

    def save(output_json, save):
        output_file = storage.get(f"{storage._next_num}_{save}.json")
        atomic_write_bytes(output_file, safe_dumps(output_json, ensure_ascii=True, indent=4).encode())
        storage.logger.info(f"Saved benchmark data in: {output_file}")

    storage.save = save


def save_baselines_if_passed(session: pytest.Session, qb, gate, progress) -> None:
    """Runs before pytest-benchmark saves: only a passing, uninjected run may write a baseline."""
    bs = getattr(session.config, "_benchmarksession", None)
    wants_latency = bs is not None and bool(bs.save or bs.autosave)
    if not (wants_latency or gate.save_portable):
        return
    why = None
    if session.testsfailed:
        why = f"{session.testsfailed} test(s) failed, and a failing run never overwrites a baseline"
    elif gate.injections:
        why = "regressions were injected (--qbench-inject-*)"
    if why is None and qb is not None:
        from qbench.gate.verdicts import noisy_campaign

        noisy = noisy_campaign(qb.campaigns.sketches(), gate.baseline_max_spread)
        if noisy:
            why = (
                f"this run was too noisy to be a baseline ({', '.join(noisy)}: "
                f"95 % intervals wider than {gate.baseline_max_spread:g}x); run again"
            )
    if why is not None:
        if wants_latency:
            bs.save = bs.autosave = False
        progress(f"no baseline saved: {why}")
        return
    if gate.save_portable and qb is not None and qb.evaluated:
        from qbench.gate import stored as portable_baseline

        path = qb.portable_baseline_path(gate.baseline_dir)
        names = portable_baseline.save(path, qb.evaluated, qb.environment())
        progress(f"portable baseline (per-image predictions) of {', '.join(names)} written to {path}")


def latency_mode(qb) -> str:
    """What gated latency in this run: ``same-job base <sha>``, ``stored run for this machine`` or ``latency not gated``."""
    modes = sorted({v.against for v in qb.verdicts.values() if v.check == "latency"})
    return ", ".join(modes) if modes else "latency not gated"


def write_gate_json(qb, verdict_line: str, machine_id: str):
    """``<report dir>/gate.json``: the mode, every verdict with its figures (what ``qbench gatecheck`` reads)."""
    from dataclasses import asdict

    from qbench.core.fsutil import atomic_write_json

    return atomic_write_json(
        qb.settings.reports / "gate.json",
        {
            "verdict": verdict_line,
            "passed": verdict_line.startswith("qbench gate: PASS"),
            "mode": latency_mode(qb),
            "base": qb.base.spec.mode if qb.base is not None else None,
            "base_failures": {k: str(v) for k, v in (qb.base.failures if qb.base is not None else {}).items()},
            "machine_id": machine_id,
            "verdicts": [asdict(v) for v in qb.verdicts.values()],
        },
    )


def gate_summary_lines(qb, gate, machine_id: str) -> list[tuple[str, bool]]:
    """``(line, is_failure)`` for the summary; the last line is the verdict, naming the mode that gated latency."""
    verdicts = list(qb.verdicts.values())
    machine = fingerprint.describe(fingerprint.fingerprint(qb.settings.threads))
    base_failures = list(qb.base.failures.values()) if qb.base is not None else []
    if not verdicts and not base_failures:
        if not qb.evaluated:
            return []
        return [
            (
                f"qbench gate: nothing gated on machine {machine_id} ({machine}): no --qbench-base, no stored "
                f"predictions for this model, split and kind of CPU ({qb.portable_baseline_path(gate.baseline_dir)}) "
                "and no stored latency run for this machine; latency not gated",
                False,
            )
        ]
    failed = [v for v in verdicts if not v.ok]
    acc = [v for v in verdicts if v.check == "accuracy"]
    lat = [v for v in verdicts if v.check == "latency"]
    mem = [v for v in verdicts if v.check == "memory"]
    parts = []
    if acc:
        against = ", ".join(sorted({v.against for v in acc}))
        parts.append(f"accuracy of {len(acc)} variant(s) against {against}")
    if mem:
        parts.append(f"peak memory of {len(mem)} against {', '.join(sorted({v.against for v in mem}))}")
    if lat:
        parts.append(f"latency of {len(lat)} against {latency_mode(qb)}")
    elif qb.base is not None:
        parts.append(f"latency NOT GATED ({qb.base.label} did not build or run: lines above)")
    else:
        parts.append(
            "latency NOT GATED (no --qbench-base and no stored run for this machine: "
            "`--qbench-base origin/main` measures the base in this job)"
        )
    bad = len(failed) + len(base_failures)
    head = "FAIL" if bad else ("PASS" if lat else "PASS (accuracy only)")
    detail = "gated " + "; ".join(parts)
    if bad:
        names = [f"{v.variant} {v.check}" for v in failed] + [f"{name} base" for name in (qb.base.failures if qb.base else {})]
        detail = f"{bad} failure(s): {', '.join(names)}; {detail}"
    return [
        *((v.line, True) for v in failed),
        *((f"qbench: {e}", True) for e in base_failures),
        (f"qbench gate: {head} on machine {machine_id} ({machine}): {detail}", bool(bad)),
    ]


def base_comparison(qb) -> dict[str, dict]:
    """Variant -> base, candidate and their ratio (with its interval) from this run's same-job verdicts."""
    if qb.base is None:
        return {}
    out: dict[str, dict] = {}
    for (variant, check), v in qb.verdicts.items():
        row = out.setdefault(variant, {"base": qb.base.label})
        if check == "latency":
            f = v.figures
            row |= {
                "base_p10_ms": f.get("base_p10_ms"),
                "candidate_p10_ms": f.get("candidate_p10_ms"),
                "ratio": f.get("ratio"),
                "ratio_ci": [f.get("low"), f.get("high")],
                "latency_ok": v.ok,
            }
        elif check == "memory":
            f = v.figures
            row |= {"base_peak_mib": f["baseline_peak_mib"], "candidate_peak_mib": f["peak_mib"], "memory_ok": v.ok}
        else:
            f = v.figures
            row |= {
                "base_accuracy": f["accuracy"] + f["loss"],
                "candidate_accuracy": f["accuracy"],
                "newly_wrong": f["worse"],
                "newly_right": f["better"],
                "mcnemar_p": f["p_value"],
                "accuracy_ok": v.ok,
            }
    for variant, error in qb.base.failures.items():
        out.setdefault(variant, {"base": qb.base.label})["failure"] = str(error)
    return out


def render_base_table(comparison: dict[str, dict]) -> str:
    """The same-job comparison as Markdown (empty without a base)."""
    from qbench.report.tables import format_base_ratio, format_value

    if not comparison:
        return ""
    lines = [
        f"Same-job comparison against {next(iter(comparison.values()))['base']} (p10 latency, interleaved rounds):",
        "| Variant | Base p10 [ms] | Candidate p10 [ms] | Ratio (95% CI) | Base accuracy | Candidate accuracy | Verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for variant, c in comparison.items():
        ratio = format_base_ratio(c)
        oks = [c[k] for k in ("latency_ok", "accuracy_ok") if k in c]
        verdict = c["failure"] if "failure" in c else ("ok" if all(oks) else "REGRESSED")
        lines.append(
            f"| {variant} | {format_value(c.get('base_p10_ms'), '.3f')} | {format_value(c.get('candidate_p10_ms'), '.3f')} "
            f"| {ratio} | {format_value(c.get('base_accuracy'), '.4f')} | {format_value(c.get('candidate_accuracy'), '.4f')} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def gate_page(qb, gate_lines: list[tuple[str, bool]]) -> dict | None:
    """What index.html opens with: PASS/FAIL, the mode, and every verdict line (passing ones too)."""
    if not gate_lines:
        return None
    verdict = gate_lines[-1][0]
    lines = [(v.line, v.ok) for v in qb.verdicts.values()]
    lines += [(f"qbench: {e}", False) for e in (qb.base.failures.values() if qb.base is not None else ())]
    return {
        "verdict": verdict,
        "passed": verdict.startswith("qbench gate: PASS"),
        "gated": bool(qb.verdicts),
        "mode": latency_mode(qb),
        "lines": lines,
        "comparison": base_comparison(qb),
    }
