"""ONNX Runtime peers: the model converted to ONNX and run by ONNX Runtime's CPU execution provider.

* ``onnxruntime-fp32`` - ``tf2onnx.convert.from_tflite`` of the ``tflite-fp32`` artifact
* ``onnxruntime-int8`` - ``onnxruntime.quantization.quantize_static``: QDQ format, int8
                         activations and weights, weights per channel, calibrated on the same
                         train-split samples as ``tflite-int8`` (after ONNX Runtime's own
                         ``quant_pre_process``: ONNX shape inference and graph optimization)

Float image in, float scores out (the QDQ graph quantizes inside).  Sessions
get ``intra_op_num_threads`` = threads and run ops sequentially.  Installed
by the ``[peers]`` extra; off by default.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant, requires_extra
from qbench.backends.kernels import float_dispatch, int8_dispatch
from qbench.core.errors import QBenchError, one_line
from qbench.core.machine import installed_versions

OPSET = 17


def _versions(*dists) -> tuple:
    return tuple(installed_versions(dists).items())


def build_fp32(ctx, out: Path) -> dict:
    import tf2onnx

    source = ctx.artifact("tflite-fp32").path
    tf2onnx.convert.from_tflite(str(source), opset=OPSET, output_path=str(out))
    return {"source": source.name, "opset": OPSET, "tf2onnx_version": tf2onnx.__version__}


def build_int8(ctx, out: Path) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = ctx.calibration_inputs()
    ctx.progress(f"ONNX Runtime static QDQ quantization (per channel) on {len(calib)} train-split samples")
    fp32 = ctx.artifact("onnxruntime-fp32").path
    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Samples(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calib)

        def get_next(self):
            sample = next(self._it, None)
            return None if sample is None else {input_name: sample[None].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        prepped = f"{tmp}/prepped.onnx"
        quant_pre_process(str(fp32), prepped, skip_symbolic_shape=True)  # static shapes: ONNX shape inference is enough
        quantize_static(
            prepped,
            str(out),
            Samples(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    return {"calibration_samples": int(len(calib)), "calibration_split": "train", "onnxruntime_version": ort.__version__}


class ONNXRuntimeRunner(Runner):
    def __init__(self, path: Path, variant: str, threads: int | None):
        import onnxruntime as ort

        self.variant = variant
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise QBenchError(f"{variant}: ONNX Runtime cannot load {path}: {one_line(exc)}") from None
        inp = self.session.get_inputs()[0]
        self._in = inp.name
        self._out = [self.session.get_outputs()[0].name]
        self._free_batch = not isinstance(inp.shape[0], int)  # tf2onnx keeps the Keras model's free batch dimension
        self.input_shape = (1, *(int(d) for d in inp.shape[1:]))
        self.score_step = _output_grid_step(path, self._out[0])

    def invoke(self, prepared):
        return self.session.run(self._out, {self._in: prepared})[0]

    def batch_runner(self, batch: int) -> Runner | None:
        """The same session with ``batch`` images a call, if the model's batch dimension is free."""
        if batch == 1 or not self._free_batch:
            return super().batch_runner(batch)
        return self.reshaped_for(batch)


def _output_grid_step(path: Path, output: str) -> float | None:
    """The scale of the DequantizeLinear that produces ``output`` (a QDQ model's quantized softmax), else None."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = next((n for n in graph.node if output in n.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    scale = next((numpy_helper.to_array(t) for t in graph.initializer if t.name == producer.input[1]), None)
    return float(scale.reshape(-1)[0]) if scale is not None and scale.size == 1 else None


def _load(name: str):
    def load(path, meta, threads, **_):
        return ONNXRuntimeRunner(Path(path), name, threads)

    return load


register(
    Variant(
        name="onnxruntime-fp32",
        description="peer: ONNX Runtime CPU execution provider, the tflite-fp32 model converted by tf2onnx",
        suffix=".onnx",
        build=build_fp32,
        load=_load("onnxruntime-fp32"),
        runtime_modules=("onnxruntime",),
        derives_from="tflite-fp32",
        cache_key=lambda _ctx: _versions("tf2onnx", "onnx"),
        unavailable=requires_extra(("onnxruntime", "tf2onnx"), "peers"),
        lossless_tolerance=1e-3,
        default=False,
        group="peers",
        kernel_isa=lambda flags: f"{float_dispatch(flags)} (MLAS)",
    )
)
register(
    Variant(
        name="onnxruntime-int8",
        description="peer: ONNX Runtime, static QDQ int8 quantization, weights per channel, train-split calibration",
        suffix=".onnx",
        build=build_int8,
        load=_load("onnxruntime-int8"),
        runtime_modules=("onnxruntime",),
        derives_from="onnxruntime-fp32",
        cache_key=lambda ctx: (_versions("onnxruntime"), ctx.calibration_key()),
        unavailable=requires_extra(("onnxruntime", "tf2onnx"), "peers"),
        default=False,
        group="peers",
        kernel_isa=lambda flags: f"{int8_dispatch(flags)} (MLAS)",
    )
)
