"""The HTML report (:mod:`qbench.report.html`): one self-contained page whose every figure loads.

Built from synthetic rows (no model needed), then opened in headless
Chromium, whose DOM after the load event says how many images decoded.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from qbench.report.html import write_html_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _row(variant, accuracy, median_ms, size_kib, rng):
    cm = rng.integers(0, 5, size=(3, 3)) + np.diag([30, 30, 30])
    return {
        "variant": variant,
        "accuracy": accuracy,
        "speed_boost": 1.0,
        "median_latency_ms": median_ms,
        "median_ci_low_ms": median_ms * 0.95,
        "median_ci_high_ms": median_ms * 1.1,
        "invoke_median_ms": median_ms * 0.9,
        "p99_ms": median_ms * 2,
        "size_bytes": size_kib * 1024,
        "size_reduction": 1.0,
        "confusion_matrix": cm.tolist(),
        "status": "ok",
    }


@pytest.fixture
def report(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row("native", 0.95, 1.4, 2222, rng), _row("tflite-int8", 0.94, 0.08, 644, rng)]
    rows.append({**_row("broken", 0.0, 1.0, 10, rng), "accuracy": None, "status": "FAILED: crashed during load (SIGABRT)"})
    layers = [{"tensor": f"m/m/block_{i}/Relu6;x", "op": "CONV_2D", "snr_db": 10.0 + i, "max_abs_error": 0.1} for i in range(12)]
    index = write_html_report(
        tmp_path,
        rows,
        notes=["Harness floor: 0.9 us"],
        environment={"python": "3.11"},
        latency_samples_ms={"native": rng.gamma(9, 0.15, 400), "tflite-int8": rng.gamma(9, 0.01, 400)},
        calibration=[
            {
                "label": "0.01 of train",
                "kind": "fraction",
                "fraction": 0.01,
                "samples": 14,
                "accuracy": 0.91,
                "drop_vs_native": 0.04,
            },
            {
                "label": "0.3 of train",
                "kind": "fraction",
                "fraction": 0.3,
                "samples": 431,
                "accuracy": 0.94,
                "drop_vs_native": 0.01,
            },
            {
                "label": "one class (3)",
                "kind": "one-class",
                "fraction": None,
                "samples": 145,
                "accuracy": 0.6,
                "drop_vs_native": 0.35,
            },
            {"label": "balanced", "kind": "balanced", "fraction": None, "samples": 145, "accuracy": 0.94, "drop_vs_native": 0.01},
        ],
        reference_accuracy=0.95,
        layer_errors={"tflite-int8": layers, "tflite-int16x8": [{**r, "snr_db": r["snr_db"] + 40} for r in layers]},
        class_names=["a", "b", "c"],
    )
    return index


def _figures(index):
    return sorted((index.parent / "figures").glob("*.png"))


def test_every_figure_is_a_png_and_embedded(report):
    page = report.read_text()
    figures = _figures(report)
    # bubble, latency distributions, calibration curve, per-layer SNR, one confusion matrix per measured variant
    assert {f.name for f in figures} == {
        "accuracy_latency.png",
        "latency_distributions.png",
        "calibration.png",
        "layer_snr.png",
        "confusion_native.png",
        "confusion_tflite-int8.png",
    }
    for f in figures:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f.name
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert "FAILED: crashed during load (SIGABRT)" in page and "one class (3)" in page and "block_0/Relu6" in page


def test_page_renders_in_headless_chromium(report, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(
            "no Chromium on PATH, so the page was checked but not rendered: "
            "apt-get install chromium (.ci/run installs it when it runs as root)"
        )
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        report.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert proc.returncode == 0 and "<body" in dom, f"Chromium failed (rc {proc.returncode}): {proc.stderr[-400:]}"
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, "the page's load handler did not run"
    assert int(total.group(1)) == len(_figures(report)) == int(loaded.group(1)), (
        f"{loaded.group(1)} of {total.group(1)} images decoded"
    )


def test_an_earlier_runs_figures_are_removed(tmp_path):
    """A variant measured last run but not in this one leaves no figure behind in ``figures/``."""
    rng = np.random.default_rng(0)
    stale = tmp_path / "figures" / "confusion_tvm-avx2-fp32.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\x89PNG old")
    index = write_html_report(tmp_path, [_row("native", 0.95, 1.4, 2222, rng)], class_names=["a", "b", "c"])
    assert not stale.exists()
    assert {f.name for f in _figures(index)} == {"accuracy_latency.png", "confusion_native.png"}
