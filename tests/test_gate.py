"""The gate's parts on known answers: verdicts, block-bootstrap intervals, fingerprint, injections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qbench.core import machine
from qbench.core.errors import QBenchError
from qbench.core.stats import block_sketches, sketch_quantile_ci, sketch_ratio_ci
from qbench.gate import fingerprint
from qbench.gate.verdicts import accuracy_verdict, base_latency_verdict, latency_verdict
from qbench.measure.inject import corrupt_predictions, parse_assignments, stretch_call


def _blocks(rng, scale=1.0, blocks=20, per_block=200, sigma=0.05):
    return [scale * rng.lognormal(0.0, sigma, per_block) for _ in range(blocks)]


# ---------------------------------------------------------------- accuracy
def test_accuracy_verdict_fails_a_significant_loss_beyond_the_margin():
    y = np.arange(400) % 10
    base = y.copy()
    cur = y.copy()
    cur[:8] = (cur[:8] + 1) % 10  # 8 newly wrong, 2 pp of 400
    v = accuracy_verdict("x", y, base, cur, alpha=0.01, margin=0.005)
    assert not v.ok
    assert (v.figures["worse"], v.figures["better"]) == (8, 0)
    assert v.figures["p_value"] == pytest.approx(2.0**-8)
    assert "8 images newly wrong, 0 newly right of 400" in v.line and "p=0.0039" in v.line


def test_accuracy_verdict_passes_identical_predictions_and_small_or_balanced_changes():
    y = np.arange(400) % 10
    assert accuracy_verdict("x", y, y, y, 0.01, 0.005).ok
    one_off = y.copy()
    one_off[0] = 3  # one image: not significant, under the margin
    assert accuracy_verdict("x", y, y, one_off, 0.01, 0.005).ok
    swapped = y.copy()
    base = y.copy()
    swapped[:10] = (swapped[:10] + 1) % 10
    base[10:20] = (base[10:20] + 1) % 10  # 10 lost, 10 gained: no evidence of worse
    assert accuracy_verdict("x", y, base, swapped, 0.01, 0.005).ok


def test_accuracy_verdict_needs_the_margin_as_well_as_significance():
    y = np.arange(2000) % 10
    cur = y.copy()
    cur[:9] = (cur[:9] + 1) % 10  # significant (p = 2^-9) but only 0.45 pp
    assert accuracy_verdict("x", y, y, cur, 0.01, 0.005).ok
    assert not accuracy_verdict("x", y, y, cur, 0.01, 0.004).ok


# ----------------------------------------------------------------- latency
def test_block_bootstrap_interval_covers_a_known_quantile():
    rng = np.random.default_rng(5)
    true_p10 = float(np.exp(0.05 * -1.2815515655446004))  # lognormal(0, 0.05) 10th percentile
    hits = 0
    trials = 60
    for _ in range(trials):
        _, lo, hi = sketch_quantile_ci(block_sketches(_blocks(rng)), 10, resamples=400, seed=int(rng.integers(1 << 30)))
        hits += lo <= true_p10 <= hi
    assert hits / trials >= 0.88, hits / trials


def test_latency_verdict_detects_a_slowdown_and_passes_noise():
    rng = np.random.default_rng(6)
    base = block_sketches(_blocks(rng))
    same = block_sketches(_blocks(rng))
    slow = block_sketches(_blocks(rng, 1.3))
    assert latency_verdict("x", same, base, 1.2).ok
    v = latency_verdict("x", slow, base, 1.2)
    assert not v.ok and v.figures["low"] > 1.2 and "wholly above 1.2x" in v.line
    assert not latency_verdict("x", slow, base, 1.2).figures["low"] > 1.35


def test_paired_ratio_cancels_a_slow_phase_shared_by_both():
    rng = np.random.default_rng(7)
    phase = np.where(np.arange(20) % 4 == 0, 1.8, 1.0)  # every 4th round the machine is slow for everyone
    a = [p * rng.lognormal(0, 0.02, 100) for p in phase]
    b = [2.0 * p * rng.lognormal(0, 0.02, 100) for p in phase]
    _, lo_p, hi_p = sketch_ratio_ci(block_sketches(b), block_sketches(a), 50, paired=True)
    _, lo_u, hi_u = sketch_ratio_ci(block_sketches(b), block_sketches(a), 50, paired=False)
    assert lo_p <= 2.0 <= hi_p
    assert hi_p - lo_p < hi_u - lo_u


def test_base_verdict_pairs_the_candidate_with_its_twin_round_by_round():
    rng = np.random.default_rng(8)
    phase = np.where(np.arange(20) % 5 == 0, 1.6, 1.0)  # slow rounds hit candidate and base alike
    base = block_sketches([p * rng.lognormal(0, 0.03, 200) for p in phase])
    same = block_sketches([p * rng.lognormal(0, 0.03, 200) for p in phase])
    slow = block_sketches([1.3 * p * rng.lognormal(0, 0.03, 200) for p in phase])
    v = base_latency_verdict("x", same, base, "base abc", "same-job base abc", 1.2)
    assert v.ok and 0.97 < v.figures["ratio"] < 1.03 and v.against == "same-job base abc"
    v = base_latency_verdict("x", slow, base, "base abc", "same-job base abc", 1.2)
    assert not v.ok and "1.3" in v.line and "base abc in the same job" in v.line and "wholly above 1.2x" in v.line
    assert v.figures["base_p10_ms"] > 0 and v.figures["candidate_p10_ms"] > v.figures["base_p10_ms"]


# ------------------------------------------------------------- fingerprint
DATA = Path(__file__).parent / "data"


def test_fingerprint_names_what_decides_speed_and_changes_with_it():
    fp = fingerprint.fingerprint()
    assert {"cpu", "isa", "isa_class", "family", "model", "stepping", "caches", "cores", "threads", "python"} <= set(fp)
    assert {"tensorflow", "ai-edge-litert", "apache-tvm", "openvino"} <= set(fp)
    assert "host" not in fp  # /etc/machine-id is the same on every VM made from one image
    assert fp["threads"] == fp["cores"] and fingerprint.fingerprint(1)["threads"] == 1
    mid = fingerprint.machine_id(fp)
    assert mid.startswith("Linux-CPython-") and f"-{fp['isa_class']}-{fp['cores']}c-" in mid
    assert mid == fingerprint.machine_id(dict(fp))  # stable
    changes = (
        ("cores", fp["cores"] + 1),
        ("threads", 7),
        ("tensorflow", "9.9"),
        ("cpu", "Other CPU"),
        ("model", "99"),
        ("stepping", "9"),
        ("caches", "L2 512K"),
        ("isa", ["avx2"]),
    )
    for key, value in changes:
        assert fingerprint.machine_id({**fp, key: value}) != mid, key
    assert all(c.isalnum() or c in "-_." for c in mid)  # a directory name


def test_two_cpus_that_differ_only_in_avx512_get_two_fingerprints():
    vnni = (DATA / "cpuinfo-epyc-avx512-vnni.txt").read_text()
    avx2 = (DATA / "cpuinfo-epyc-avx2-only.txt").read_text()
    a = fingerprint.fingerprint(cpuinfo=vnni, caches="L2 1024K")
    b = fingerprint.fingerprint(cpuinfo=avx2, caches="L2 1024K")
    assert a["cpu"] == b["cpu"] == "AMD EPYC" and a["family"] == b["family"] and a["model"] == b["model"]
    assert (a["isa_class"], b["isa_class"]) == ("avx512vnni", "avx2")
    assert {"avx512f", "avx512_vnni", "avx_vnni"} <= set(a["isa"]) and not {"avx512f", "avx512_vnni", "avx_vnni"} & set(b["isa"])
    assert fingerprint.machine_id(a) != fingerprint.machine_id(b)
    assert "AVX-512 VNNI" in fingerprint.describe(a) and "AVX2 only" in fingerprint.describe(b)


def test_isa_classes():
    assert machine.isa_class(["avx2", "avx_vnni"]) == "avxvnni"
    assert machine.isa_class(["avx2", "avx512f"]) == "avx512"
    assert machine.isa_class(["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]) == "amx"
    assert machine.isa_class(["sse4_2"]) == "sse"


def test_the_fingerprint_reads_the_real_machine_one_core_when_affinity_allows_one():
    import json
    import subprocess
    import sys

    code = (
        "import os, json; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from qbench.gate import fingerprint; fp = fingerprint.fingerprint(); "
        "print(json.dumps({'cores': fp['cores'], 'threads': fp['threads'], 'id': fingerprint.machine_id(fp)}))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["cores"] == 1 and out["threads"] == 1 and "-1c-" in out["id"]
    here = fingerprint.fingerprint()
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        flags = next(line for line in fh if line.startswith("flags")).split()
    assert ("avx512_vnni" in flags) == ("avx512_vnni" in here["isa"]) and ("avx2" in flags) == ("avx2" in here["isa"])


# -------------------------------------------------------------- injections
def test_injection_options_are_validated_in_one_line():
    known = ("native", "tflite-int8")
    assert parse_assignments(["tflite-int8=1.3"], "--x", 1.0, 100.0, known) == {"tflite-int8": 1.3}
    for bad, msg in (
        ("tflite-int8", "VARIANT=NUMBER"),
        ("nope=1.3", "unknown variant"),
        ("native=abc", "not a number"),
        ("native=0.5", "outside"),
    ):
        with pytest.raises(QBenchError, match=msg):
            parse_assignments([bad], "--x", 1.0, 100.0, known)


def test_injected_error_turns_the_requested_share_of_correct_predictions_wrong():
    rng = np.random.default_rng(9)
    y = np.arange(500) % 10
    scores = rng.dirichlet(np.ones(10), 500)
    scores[np.arange(500), y] += 2.0
    scores /= scores.sum(axis=1, keepdims=True)
    out = corrupt_predictions(scores, y, 0.02, seed=1)
    assert np.sum(np.argmax(out, 1) != y) == 10
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.sort(out, 1), np.sort(scores, 1))  # only swapped


def test_stretched_call_takes_factor_times_as_long():
    """On a fake clock (a wall-clock version flaked on a loaded 2-core VM): a call of 2.0 units,
    stretched 1.5x, returns once the clock reads 3.0, within one tick."""
    now = [0.0]
    tick = 1e-3

    def clock():
        now[0] += tick
        return now[0]

    def work(_x):
        now[0] += 2.0

    slowed = stretch_call(work, 1.5, clock)
    start = now[0]
    slowed(None)
    elapsed = now[0] - start
    assert 3.0 <= elapsed <= 3.0 + 3 * tick, elapsed
    assert stretch_call(work, 1.0) is work


# ------------------------------------------------------------ confirmation
def _campaigns(*oks):
    from qbench.gate.verdicts import Verdict

    calls = []

    def verdict(campaign):
        calls.append(campaign)
        ok = oks[campaign]
        return Verdict("v", "latency", ok, f"v: ratio {campaign}", {"ratio": 1.0 if ok else 1.4})

    return verdict, calls


@pytest.mark.parametrize(
    "oks, regressed, campaigns",
    [
        ((True,), False, [0]),
        ((False, False), True, [0, 1]),
        ((False, True, True), False, [0, 1, 2]),
        ((False, True, False), True, [0, 1, 2]),
    ],
)
def test_a_latency_regression_must_show_in_two_campaigns(oks, regressed, campaigns):
    from qbench.gate.verdicts import confirmed

    verdict, calls = _campaigns(*oks)
    v = confirmed(verdict)
    assert (not v.ok) == regressed and calls == campaigns
    if len(oks) > 1:
        assert ("not confirmed" in v.line) != regressed


def test_a_noisy_campaign_is_not_fit_to_be_a_baseline():
    from qbench.gate.verdicts import noisy_campaign

    rng = np.random.default_rng(10)
    calm = block_sketches(_blocks(rng))
    # four rounds in five 2.3x slower, as in this VM's slow phases: p10 sits on the edge of the fast rounds
    mixed = block_sketches([b * (2.3 if i % 5 else 1.0) for i, b in enumerate(_blocks(rng))])
    assert noisy_campaign({"calm": calm}) == []
    assert noisy_campaign({"calm": calm, "mixed": mixed})[0].startswith("mixed p10 ")
