"""The x86 peers (OpenVINO, ONNX Runtime): selectable as a group, one skip line without their extra,
and, when installed (``pip install -e .[peers]``, ``tox -e peers``), built and run on a tiny CNN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qbench import backends
from qbench.backends.base import missing_extra
from qbench.config import make_settings, parse_variants

PEERS = ("openvino-fp32", "openvino-int8", "openvino-int8-selective", "onnxruntime-fp32", "onnxruntime-int8")


def test_peers_are_a_group_off_by_default():
    assert backends.groups()["peers"] == PEERS
    assert not set(PEERS) & set(parse_variants(None))
    assert parse_variants("all,peers") == parse_variants(None) + PEERS
    assert parse_variants("tflite-int8,peers") == ("tflite-int8", *PEERS)


def test_a_missing_extra_is_one_line_naming_it():
    line = missing_extra(("qbench_no_such_module", "numpy"), "peers")
    assert line == "needs the [peers] extra (qbench_no_such_module not installed): pip install -e .[peers]"
    assert missing_extra(("numpy",), "peers") is None


def test_an_unavailable_variant_is_skipped_not_failed():
    """The plugin parametrizes it with a skip mark carrying the one line (no error, no traceback)."""
    from qbench import plugin

    name = "qbench-test-unavailable"
    backends.register(
        backends.Variant(
            name=name,
            description="test",
            suffix=".x",
            build=lambda ctx, out: None,
            load=lambda *a, **k: None,
            unavailable=lambda: missing_extra(("qbench_no_such_module",), "peers"),
            default=False,
        )
    )
    try:
        assert plugin._unavailable(name) == (
            f"{name} cannot run here: needs the [peers] extra (qbench_no_such_module not installed): pip install -e .[peers]"
        )
        assert plugin._unavailable("tflite-int8") is None
    finally:
        backends.unregister(name)


keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    for module in ("openvino", "nncf", "onnxruntime", "tf2onnx"):
        pytest.importorskip(module, reason="the [peers] extra is not installed")
    from qbench.session import QBenchSession
    from tests.test_variants import tiny_model

    workdir = tmp_path_factory.mktemp("peers")
    model = workdir / "tiny.keras"
    tiny_model().save(model)
    settings = make_settings(
        model_path=str(model), build_dir=str(workdir / "build"), calibration_samples=20, variants="native,peers"
    )
    return QBenchSession(settings, isolate=False)


@pytest.mark.parametrize("variant", PEERS)
def test_peer_builds_and_agrees_with_keras(session, variant):
    art = session.artifact(variant)
    meta = json.loads(art.path.with_suffix(art.path.suffix + ".json").read_text())
    assert meta["variant"] == variant and art.size_bytes > 0
    x, _ = session.test_inputs()
    expected = session.runner("native").predict_many(x)
    got = session.runner(variant).predict_many(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    if variant.endswith("fp32"):
        np.testing.assert_allclose(got, expected, atol=1e-4)
    else:
        assert meta["calibration_split"] == "train" and meta["calibration_samples"] == 20
        # int8: close, not equal (the untrained tiny model's scores are all near 0.1, so top-1 means nothing here)
        assert 0 < np.max(np.abs(got - expected)) < 0.05


def test_onnxruntime_int8_is_qdq_per_channel(session):
    import onnx

    graph = onnx.load(str(session.artifact("onnxruntime-int8").path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: i for i in graph.initializer}
    per_channel = [
        n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits and len(inits[n.input[1]].dims) == 1
    ]
    assert per_channel, "no per-channel (1-D scale) weight dequantization found"
