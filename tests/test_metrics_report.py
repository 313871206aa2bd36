import json

import numpy as np
import pytest

from qbench.measure.results import VariantResult
from qbench.report.metrics import classification_metrics
from qbench.report.tables import render_markdown, summarize, write_reports


def test_metrics_basic():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2], 3)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert m["recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["g_mean"] == pytest.approx(0.5 ** (1 / 3))


def test_g_mean_exposes_a_dead_class():
    y = np.repeat(np.arange(4), 25)
    pred = np.where(y == 3, 0, y)  # class 3 never predicted: accuracy still 0.75
    m = classification_metrics(y, pred, 4)
    assert m["accuracy"] == 0.75 and m["g_mean"] == 0.0


def _results():
    return {
        "native": VariantResult(
            "native",
            0.95,
            {"g_mean": 0.94, "precision": 0.9, "recall": 0.8, "f1": 0.85, "confusion_matrix": [[5, 1], [0, 4]]},
            4000,
            {"mean": 0.005, "median": 0.004, "rounds": 10, "invoke": {"p50": 0.003, "p90": 0.0035}},
        ),
        "tflite-int8": VariantResult(
            "tflite-int8", 0.94, {"g_mean": 0.93}, 1000, {"mean": 0.001, "median": 0.001, "rounds": 50, "invoke": {"p50": 0.0005}}
        ),
        "tvm-avx2-int8": VariantResult("tvm-avx2-int8", 0.94, {}, 2000, None),
    }


def test_summary_ratios_and_missing_values():
    rows = {r["variant"]: r for r in summarize(_results())}
    assert rows["native"]["speed_boost"] == 1.0 and rows["native"]["size_reduction"] == 1.0
    assert rows["tflite-int8"]["speed_boost"] == pytest.approx(4.0)
    assert rows["tflite-int8"]["size_reduction"] == pytest.approx(4.0)
    assert rows["tflite-int8"]["invoke_speed_boost"] == pytest.approx(6.0)  # 3 ms / 0.5 ms, the runtimes alone
    assert rows["tflite-int8"]["end_to_end_median_ms"] == pytest.approx(1.0)
    assert rows["tflite-int8"]["invoke_median_ms"] == pytest.approx(0.5)
    assert rows["native"]["invoke_p90_ms"] == pytest.approx(3.5)
    assert rows["tvm-avx2-int8"]["speed_boost"] is None  # no latency measured
    assert rows["tvm-avx2-int8"]["invoke_median_ms"] is None
    assert rows["tvm-avx2-int8"]["size_reduction"] == pytest.approx(2.0)


def test_summary_without_native_has_no_ratios():
    res = _results()
    del res["native"]
    assert all(r["speed_boost"] is None and r["size_reduction"] is None for r in summarize(res))


def test_markdown_and_json(tmp_path):
    rows = summarize(_results())
    md = render_markdown(rows)
    lines = md.splitlines()
    assert lines[0].startswith(
        "| Variant | Speed boost e2e (95% CI) | Speed boost invoke (95% CI) | Accuracy | Size reduction "
        "| End-to-end median [ms] (95% CI) | Invoke median [ms] | p90 [ms] | p99 [ms]"
    )
    assert lines[2].startswith("| native | 1.00 | 1.00 | 0.9500 | 1.00 | 4.000 | 3.000 |")
    assert "| tflite-int8 | 4.00 | 6.00 | 0.9400 | 4.00 | 1.000 | 0.500 |" in md
    assert "| tvm-avx2-int8 | n/a | n/a | 0.9400 | 2.00 | n/a | n/a |" in md
    floor = {"median_ms": 0.002, "p90_ms": 0.003, "calls": 100}
    md_path, js_path = write_reports(rows, {"cpu": "test"}, tmp_path, class_names=["cat", "dog"], harness_floor=floor)
    text = md_path.read_text()
    assert "## Environment" in text
    assert "## Confusion matrix: native" in text and "| cat | 5 | 1 |" in text and "| dog | 0 | 4 |" in text
    assert "## Confusion matrix: tflite-int8" not in text  # no metrics recorded for it
    data = json.loads(js_path.read_text())
    assert [r["variant"] for r in data["rows"]] == ["native", "tflite-int8", "tvm-avx2-int8"]
    assert data["rows"][1]["invoke_median_ms"] == pytest.approx(0.5) and data["rows"][1]["end_to_end_median_ms"] == 1.0
    assert data["harness_floor"] == floor
