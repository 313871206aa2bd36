"""Reading and writing TFLite flatbuffers with the ``tflite`` schema package.

* :func:`weight_tensors` lists the constant weight tensors of an int8 model so
  tests can check the spec (symmetric, per-channel, zero point 0, [-127, 127]).
* :func:`single_op_model` builds a one-operator QUANTIZE or DEQUANTIZE model,
  which lets property tests compare :mod:`qbench.backends.quant` against LiteRT's own
  kernels for arbitrary scales and zero points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qbench.core.errors import QBenchError

_NP_OF_TFLITE = {
    0: np.float32,  # FLOAT32
    2: np.int32,  # INT32
    3: np.uint8,  # UINT8
    7: np.int16,  # INT16
    9: np.int8,  # INT8
}


def parse_model(buf: bytes, what: str = "TFLite model"):
    """Parse a flatbuffer; raise :class:`QBenchError` if it is not a TFLite model."""
    import tflite

    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise QBenchError(f"{what} is not a TFLite flatbuffer (missing 'TFL3' identifier)")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        model.Subgraphs(0).TensorsLength()
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise QBenchError(f"{what} is corrupt: {exc}") from None
    return model


@dataclass
class WeightTensor:
    name: str
    op: str
    values: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int


def operator_name(model, op) -> str:
    """The builtin operator name of ``op`` (CONV_2D, QUANTIZE, ...)."""
    import tflite

    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    for name, value in vars(tflite.BuiltinOperator).items():
        if value == builtin and not name.startswith("_"):
            return name
    return str(builtin)


LINEAR_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _linear_ops(model):
    """(op name, operator) of the main graph's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, in execution order."""
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = operator_name(model, op)
        if name in LINEAR_OPS and op.InputsLength() >= 2:
            yield name, op


def linear_ops(buf: bytes) -> list[tuple[str, str, tuple[int, ...]]]:
    """(op name, output tensor name, weight shape) of every conv / dense operator, in execution order."""
    model = parse_model(buf)
    graph = model.Subgraphs(0)
    return [
        (name, graph.Tensors(op.Outputs(0)).Name().decode(), tuple(int(d) for d in graph.Tensors(op.Inputs(1)).ShapeAsNumpy()))
        for name, op in _linear_ops(model)
    ]


def weight_tensors(buf: bytes) -> list[WeightTensor]:
    """Constant weight inputs (input #1) of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED."""
    model = parse_model(buf)
    graph = model.Subgraphs(0)
    out = []
    for name, op in _linear_ops(model):
        tensor = graph.Tensors(op.Inputs(1))
        dtype = _NP_OF_TFLITE.get(tensor.Type())
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if dtype is None or isinstance(data, int):  # non-constant or unknown type
            continue
        values = np.frombuffer(data.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy())
        q = tensor.Quantization()
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0, np.float32)
        zps = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0, np.int64)
        out.append(
            WeightTensor(
                name=tensor.Name().decode(),
                op=name,
                values=values,
                scales=np.asarray(scales, np.float32),
                zero_points=np.asarray(zps, np.int64),
                quantized_dimension=q.QuantizedDimension() if q is not None else 0,
            )
        )
    return out


def op_outputs(buf: bytes) -> list[tuple[int, str, str]]:
    """(tensor index, tensor name, op name) of every operator output in the main graph, in execution order:
    the activations (weights and biases are constants, never an op's output)."""
    model = parse_model(buf)
    graph = model.Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for j in range(op.OutputsLength()):
            index = int(op.Outputs(j))
            out.append((index, graph.Tensors(index).Name().decode(), operator_name(model, op)))
    return out


def softmax_input_scales(buf: bytes) -> list[tuple[float, float]]:
    """(beta, input scale) of every quantized SOFTMAX op (what LiteRT's reference kernel checks)."""
    import tflite

    model = parse_model(buf)
    graph = model.Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if operator_name(model, op) != "SOFTMAX":
            continue
        q = graph.Tensors(op.Inputs(0)).Quantization()
        if q is None or not q.ScaleLength():
            continue
        beta = 1.0
        if op.BuiltinOptionsType() == tflite.BuiltinOptions.SoftmaxOptions:
            opts = tflite.SoftmaxOptions()
            opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            beta = float(opts.Beta())
        out.append((beta, float(q.Scale(0))))
    return out


def single_op_model(op: str, length: int, scale: float, zero_point: int) -> bytes:
    """A model with one QUANTIZE (float32 -> int8) or DEQUANTIZE (int8 -> float32) op."""
    import flatbuffers
    import tflite

    if op not in ("QUANTIZE", "DEQUANTIZE"):
        raise ValueError(f"op must be QUANTIZE or DEQUANTIZE, got {op!r}")
    code = getattr(tflite.BuiltinOperator, op)
    b = flatbuffers.Builder(1024)

    def int_vector(start_fn, values):
        start_fn(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def tensor(name: str, ttype: int, quantized: bool):
        name_off = b.CreateString(name)
        shape = int_vector(tflite.TensorStartShapeVector, [length])
        quant = None
        if quantized:
            tflite.QuantizationParametersStartScaleVector(b, 1)
            b.PrependFloat32(scale)
            scale_off = b.EndVector()
            tflite.QuantizationParametersStartZeroPointVector(b, 1)
            b.PrependInt64(zero_point)
            zp_off = b.EndVector()
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale_off)
            tflite.QuantizationParametersAddZeroPoint(b, zp_off)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, name_off)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        return tflite.TensorEnd(b)

    float_t, int8_t = tflite.TensorType.FLOAT32, tflite.TensorType.INT8
    in_type, out_type = (float_t, int8_t) if op == "QUANTIZE" else (int8_t, float_t)
    t_in = tensor("input", in_type, in_type == int8_t)
    t_out = tensor("output", out_type, out_type == int8_t)

    op_inputs = int_vector(tflite.OperatorStartInputsVector, [0])
    op_outputs = int_vector(tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_inputs)
    tflite.OperatorAddOutputs(b, op_outputs)
    operator = tflite.OperatorEnd(b)

    tflite.SubGraphStartTensorsVector(b, 2)
    b.PrependUOffsetTRelative(t_out)
    b.PrependUOffsetTRelative(t_in)
    tensors = b.EndVector()
    g_inputs = int_vector(tflite.SubGraphStartInputsVector, [0])
    g_outputs = int_vector(tflite.SubGraphStartOutputsVector, [1])
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(operator)
    operators = b.EndVector()
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    tflite.SubGraphAddInputs(b, g_inputs)
    tflite.SubGraphAddOutputs(b, g_outputs)
    tflite.SubGraphAddOperators(b, operators)
    subgraph = tflite.SubGraphEnd(b)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddBuiltinCode(b, code)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
    tflite.OperatorCodeAddVersion(b, 1)
    opcode = tflite.OperatorCodeEnd(b)

    tflite.BufferStart(b)
    empty_buffer = tflite.BufferEnd(b)

    tflite.ModelStartOperatorCodesVector(b, 1)
    b.PrependUOffsetTRelative(opcode)
    opcodes = b.EndVector()
    tflite.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(subgraph)
    subgraphs = b.EndVector()
    tflite.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(empty_buffer)
    buffers = b.EndVector()
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, opcodes)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buffers)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())
