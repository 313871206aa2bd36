"""Images per second (qbench.measure.throughput): the figures from blocks, and a run against variants of known speed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qbench.config import make_settings, parse_batches
from qbench.core.errors import QBenchError
from qbench.measure import throughput
from qbench.report.throughput_table import render_throughput
from tests.helpers import run_pytest


def test_a_blocks_rate_is_its_images_over_its_seconds_and_the_best_is_named():
    blocks = {1: [np.full(10, 0.001953125), np.full(10, 0.00390625)], 8: [np.full(5, 0.00390625)] * 3}  # exact in binary
    out = throughput.summarize((1, 8, 32), blocks, 2, [900.0, 1000.0, 1100.0])
    assert out["batches"]["1"] == {"img_s": 384.0, "range": [256.0, 512.0], "blocks": 2}
    assert out["batches"]["8"]["img_s"] == 2048.0 and out["batches"]["32"] == throughput.BATCH_1_ONLY
    assert out["streams"] == {"count": 2, "img_s": 1000.0, "range": [900.0, 1100.0], "blocks": 3}
    assert out["best"] == "batch 8" and out["best_img_s"] == 2048.0
    row = {"variant": "v", "throughput": out}
    table = render_throughput([row])
    assert "| v | 384 (256-512) | 2048 (2048-2048) | batch 1 only | 1000 (900-1100) | batch 8 |" in table


def test_stream_rounds_drop_the_warm_up_and_a_failing_variant_alone():
    calls = []

    def good(start_at, seconds):
        calls.append(start_at)
        return [(100, 0.1), (90, 0.1)]

    def bad(start_at, seconds):
        raise QBenchError("crashed during throughput")

    failed = {}
    got = throughput.stream_rounds({"good": good, "bad": bad}, 3, 0.1, lambda n, e: failed.setdefault(n, str(e)))
    assert got == {"good": [1900.0] * 3} and len(calls) == 4  # 3 rounds after the warm-up
    assert failed == {"bad": "crashed during throughput"}


@pytest.mark.parametrize("text", ["1,x", "0,8", "-1"])
def test_bad_batch_sizes_are_one_line(text):
    with pytest.raises(QBenchError, match="--qbench-throughput-batches"):
        parse_batches(text)


def test_batch_sizes_and_streams_come_from_the_profile_unless_given():
    assert make_settings().batches == (1, 8, 32) and make_settings().streams == 2
    assert make_settings(profile="smoke").batches == (1, 8) and make_settings(profile="smoke").streams == 0
    given = make_settings(profile="smoke", throughput_batches="32,4", throughput_streams=3)
    assert given.batches == (4, 32) and given.streams == 3
    assert make_settings(throughput_batches="none").batches == ()
    with pytest.raises(QBenchError, match="--qbench-throughput-streams must be 0 or more"):
        make_settings(throughput_streams=-1)


def test_known_speeds_read_as_they_are(smoke_run, tmp_path):
    """2 ms a call: a call of 8 images takes 2 ms as one does, two streams are 2x one stream, batch 1 is the latency's calls
    (1 / the median latency); a runtime that takes one image a call says so."""
    build = tmp_path / "build"
    shutil.copytree(smoke_run[0], build, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    proc = run_pytest(
        "benchmarks/test_throughput.py",
        "-p",
        "tests.cost_variants",
        "--qbench-profile=smoke",
        f"--qbench-build-dir={build}",
        "--qbench-variants=test-sleep-2ms,test-noop",
        "--qbench-cost-samples=2",  # the second sample's worker is kept as the second stream
        "--qbench-throughput-streams=2",
        "--benchmark-max-time=0.3",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    rows = {r["variant"]: r for r in json.loads((build / "report" / "summary.json").read_text())["rows"]}
    sleep, noop = rows["test-sleep-2ms"]["throughput"], rows["test-noop"]["throughput"]
    one = sleep["batches"]["1"]["img_s"]
    # a call is 2 ms of sleep and what the call and the timer add: at most 0.5 ms here, on a loaded CI VM
    assert 0.002 <= 1 / one <= 0.0025, sleep
    assert "test-sleep-2ms: batch-1 throughput" not in out  # read 1 / its median latency: no tail line, no failure
    assert 0.002 <= 8 / sleep["batches"]["8"]["img_s"] <= 0.0025, sleep  # 8 images a call, counted as 8
    assert 1.8 <= sleep["streams"]["img_s"] / one <= 2.2, sleep
    assert sleep["best"] == "batch 8" and rows["test-sleep-2ms"]["throughput_img_s"] == sleep["batches"]["8"]["img_s"]
    assert noop["batches"]["8"] == throughput.BATCH_1_ONLY and noop["streams"]["count"] == 2
    assert "Batch 8 [img/s]" in out and "2 streams [img/s]" in out  # the throughput table, in the terminal
