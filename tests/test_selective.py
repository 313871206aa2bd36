"""Selective quantization (qbench.backends.tflite_selective, qbench.measure.selective): the models the sweep
builds, the ranking's images, the choice and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tflite

from qbench.backends import tflite_selective
from qbench.backends.cache import read_record
from qbench.backends.tflite_model import operator_name, parse_model
from qbench.config import make_settings
from qbench.measure import selective

BOUNDARY = ("QUANTIZE", "DEQUANTIZE")


def _sweep_models(build: Path) -> list[Path]:
    return sorted(build.glob(f"variants/*/sweep/{tflite_selective.NAME}-*.tflite"))


def test_each_k_runs_exactly_its_denylisted_operators_in_float_and_every_other_in_int8(smoke_run):
    models = _sweep_models(smoke_run[0])
    metas = [read_record(p)[0] for p in models]
    assert sorted(m["selective_k"] for m in metas) == list(make_settings(profile="smoke").sweep_ks), metas
    for path, meta in zip(models, metas, strict=True):
        model = parse_model(path.read_bytes())
        graph = model.Subgraphs(0)
        floats, ints, boundary = set(), set(), []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            name, out = operator_name(model, op), graph.Tensors(op.Outputs(0))
            if name in BOUNDARY:
                boundary.append((name, graph.Tensors(op.Inputs(0)).Name().decode(), out.Name().decode()))
            elif out.Type() == tflite.TensorType.FLOAT32:
                floats.add(out.Name().decode())
            else:
                assert out.Type() == tflite.TensorType.INT8, (path.name, name, out.Name().decode(), out.Type())
                ints.add(out.Name().decode())
        assert floats == set(meta["float_operators"]), (path.name, floats ^ set(meta["float_operators"]))
        assert len(meta["float_operators"]) == meta["selective_k"] and ints
        # the converter's boundary ops: one pair into and out of the model's float I/O, one around each float operator
        io = 2 if meta["selective_k"] < len(meta["ranking"]) else 0
        assert len(boundary) <= io + 2 * meta["selective_k"] + 2, (path.name, boundary)


def test_the_ranking_reads_train_images_only(smoke_run, tmp_path):
    """Poisoning every test image leaves the ranking as the smoke run recorded it; poisoning the train
    calibration images changes it (so the comparison would catch a ranking that read test images)."""
    from qbench.session import QBenchSession

    build = tmp_path / "build"
    shutil.copytree(smoke_run[0], build, ignore=shutil.ignore_patterns("report", "base", "*.lock"))
    recorded = read_record(_sweep_models(build)[0])[0]
    assert recorded["ranking_split"] == "train" and recorded["ranking_images"] > 0
    session = QBenchSession(make_settings(profile="smoke", build_dir=str(build)), isolate=False)
    dataset, builder = session.dataset, session.builder

    def ranking():
        tflite_selective._DEBUGGERS.clear()
        ranked = tflite_selective.ranked(builder)[1]
        return [(r["tensor"], None if r["snr_db"] is None else round(r["snr_db"], 3)) for r in ranked]

    expected = [(r["tensor"], r["snr_db"]) for r in recorded["ranking"]]
    rng = np.random.default_rng(0)
    dataset.images[dataset.test_idx] = rng.integers(0, 256, dataset.images[dataset.test_idx].shape, dtype=np.uint8)
    assert ranking() == expected
    calibration = builder.calibration_indices()
    assert np.intersect1d(calibration, dataset.test_idx).size == 0
    dataset.images[calibration] = 255 - dataset.images[calibration]
    assert ranking() != expected
    tflite_selective._DEBUGGERS.clear()


@pytest.mark.parametrize(
    ("native", "accuracies", "k", "reached"),
    [
        (0.95, {0: 0.94, 1: 0.9480, 2: 0.9490, 4: 0.95}, 1, True),  # the smallest within 0.25 pp
        (0.95, {0: 0.95, 1: 0.95}, 0, True),
        (0.95, {0: 0.90, 1: 0.93, 2: 0.93, 4: 0.92}, 1, False),  # none reached: the most accurate, smallest K of a tie
        (None, {0: 0.90, 2: 0.91}, 2, False),  # no native: the most accurate
    ],
)
def test_the_choice_is_the_smallest_k_within_the_target(native, accuracies, k, reached):
    points = [{"k": key, "accuracy": acc} for key, acc in accuracies.items()]
    assert selective.choose(points, native, 0.0025) == {"k": k, "reached": reached}


def test_the_sweep_is_in_the_smoke_runs_report(smoke_run, smoke_report):
    _, proc = smoke_run
    out = proc.stdout + proc.stderr
    assert "## Selective quantization" in out and "Chosen: " in out, out[-3000:]
    summary = json.loads((smoke_report / "summary.json").read_text())
    sweep = summary["selective_sweep"]
    assert [r["k"] for r in sweep["rows"]] == list(make_settings(profile="smoke").sweep_ks)
    assert sum(r["chosen"] for r in sweep["rows"]) == 1 and all(r["median_ms"] > 0 for r in sweep["rows"])
    row = next(r for r in summary["rows"] if r["variant"] == tflite_selective.NAME)
    chosen = next(r for r in sweep["rows"] if r["chosen"])
    assert row["accuracy"] == pytest.approx(chosen["accuracy"]) and row["size_bytes"] == chosen["size_bytes"]
    page = (smoke_report / "index.html").read_text()
    assert "Selective quantization" in page and "accuracy against end-to-end median latency, one point per K" in page
    assert (smoke_report / "figures" / "selective.png").is_file()


def test_a_variant_new_in_the_candidate_is_not_gated_and_a_swept_twin_is_the_chosen_point():
    from qbench.core.errors import QBenchError
    from qbench.gate.base import BaseSpec, BaseTwins
    from qbench.measure.prepare import NOT_AT_REVISION

    twins = BaseTwins(BaseSpec(ref="main", sha="0123456789abcdef"), None, lambda _m: None)
    point = {"path": "/base/sweep/k2.tflite", "meta": {"selective_k": 2}, "size_bytes": 1}
    twins._manifest = {
        "variants": {},
        "points": {tflite_selective.NAME: {"0": {**point, "path": "/base/sweep/k0.tflite"}, "2": point}},
        "missing": {"brand-new": NOT_AT_REVISION, "broken": "build failed: ValueError: no"},
    }
    assert twins.lacks("brand-new") and not twins.lacks("broken") and not twins.lacks(tflite_selective.NAME)
    twins.use_point(tflite_selective.NAME, 2)
    assert twins.artifact(tflite_selective.NAME) == point
    other = BaseTwins(BaseSpec(ref="main", sha="0123456789abcdef"), None, lambda _m: None)
    other._manifest, other.points = twins._manifest, {tflite_selective.NAME: 4}
    with pytest.raises(QBenchError, match=r"no model at the point the sweep chose \(4; it built 0, 2\)"):
        other.artifact(tflite_selective.NAME)
