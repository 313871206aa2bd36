"""``openvino-int8-selective`` (qbench.backends.openvino_selective): TFLite's ranked operators found in OpenVINO.

The position mapping is checked on its own (no OpenVINO needed); with the
``[peers]`` extra, on a real model: every conv/dense layer of the smoke
model's ``tflite-fp32`` finds its OpenVINO node, and NNCF leaves exactly the
ignored ones in float.
"""

from __future__ import annotations

import pytest

from qbench.backends import openvino_selective as ovs

TFLITE = [
    ("CONV_2D", "stem", (16, 3, 3, 3)),
    ("DEPTHWISE_CONV_2D", "dw", (1, 3, 3, 16)),
    ("CONV_2D", "project", (8, 1, 1, 16)),
    ("FULLY_CONNECTED", "head", (10, 8)),
]
OPENVINO = [
    ("Convolution", "Convolution_1", (16, 3, 3, 3)),
    ("GroupConvolution", "GroupConvolution_2", (16, 1, 1, 3, 3)),
    ("Convolution", "Convolution_3", (8, 16, 1, 1)),
    ("MatMul", "MatMul_4", (10, 8)),
]


def test_ranked_operators_find_their_nodes_by_position_and_the_others_say_why():
    mapped, unmapped = ovs.map_operators(["project", "add_7", "dw"], TFLITE, OPENVINO)
    assert mapped == {"project": "Convolution_3", "dw": "GroupConvolution_2"}
    assert list(unmapped) == ["add_7"] and "not a conv or dense" in unmapped["add_7"]


def test_graphs_that_differ_map_nothing_in_one_line():
    shuffled = [OPENVINO[0], OPENVINO[2], OPENVINO[1], OPENVINO[3]]  # a layer moved: the weights no longer line up
    for other in (OPENVINO[:3], shuffled):
        mapped, unmapped = ovs.map_operators(["stem", "head"], TFLITE, other)
        assert mapped == {} and set(unmapped) == {"stem", "head"}
        assert all("differ" in why for why in unmapped.values())


def test_nncf_keeps_exactly_the_ignored_nodes_in_float(smoke_run):
    ov = pytest.importorskip("openvino", reason="needs the [peers] extra: pip install -e .[peers]")
    nncf = pytest.importorskip("nncf", reason="needs the [peers] extra: pip install -e .[peers]")
    import numpy as np

    fp32 = sorted((smoke_run[0] / "variants").glob("*/tflite-fp32-*.tflite"))[0]
    model = ov.convert_model(str(fp32))
    dims = model.inputs[0].get_partial_shape()
    model.reshape([1] + [d.get_length() for d in list(dims)[1:]])  # as openvino-fp32 is built: one image a call
    ops = ovs.openvino_linear_ops(model)
    from qbench.backends.tflite_model import linear_ops

    tflite_ops = linear_ops(fp32.read_bytes())
    mapped, unmapped = ovs.map_operators([t for _, t, _ in tflite_ops], tflite_ops, ops)
    assert len(mapped) == len(tflite_ops) == len(ops) and not unmapped
    ignored = [ops[0][1], ops[2][1]]
    shape = [int(d) for d in model.inputs[0].get_partial_shape().to_shape()]
    rng = np.random.default_rng(0)
    calib = nncf.Dataset([rng.random(shape, dtype=np.float32) for _ in range(4)])
    quantized = nncf.quantize(model, calib, subset_size=4, ignored_scope=nncf.IgnoredScope(names=ignored))

    def quantized_weights(node) -> bool:
        producer = node.input(1).get_source_output().get_node()
        seen = set()
        while producer.get_type_name() not in ("Constant", "Parameter") and producer.get_friendly_name() not in seen:
            seen.add(producer.get_friendly_name())
            if producer.get_type_name() in ("FakeQuantize", "FakeConvert"):
                return True
            producer = producer.input(0).get_source_output().get_node()
        return producer.get_element_type().get_type_name() in ("i8", "u8")

    linear = {n.get_friendly_name(): n for n in quantized.get_ordered_ops() if n.get_type_name() in ovs.LINEAR_OPENVINO}
    assert {name for name, node in linear.items() if not quantized_weights(node)} == set(ignored)
