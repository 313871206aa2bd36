"""The TVM integer lowering (:mod:`qbench.tvm.int8_lowering`) against TFLite's arithmetic.

Three layers:

1. The fixed-point requantization: ``quantize_multiplier`` against its
   definition; the Relax int64 ``_rescale`` (ADD's two input rescales) and the
   requantize kernel (every requantization to int8) against an independent pure-Python
   gemmlowp (``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``,
   with C's truncating division) and against one-rounding for dense.
2. One-op int8 models (CONV_2D with per-channel scales, 3x3 and 1x1,
   DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MEAN, and a Rescaling's MUL and ADD by
   constants, which become one lookup table), converted by TensorFlow's
   full-integer PTQ (the 1x1 convolution and one dense layer are shaped to
   take the ``vpmaddwd`` kernel of :mod:`qbench.tvm.avx2_int8_kernels`, and
   three ``-vnni`` ones the ``vpdpbusd`` kernels of
   :mod:`qbench.tvm.vnni_int8_kernels`, compiled for this CPU and skipped in
   one line where it has no VNNI):
   hypothesis draws int8 inputs, and the lowered TVM module must return
   what LiteRT's *reference* kernels return, with no float convolution or
   matmul left in it.
3. (in test_variants.py) the default-profile model's compiled module.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qbench.tvm import amx_int8_kernels
from qbench.tvm.avx2_int8_kernels import requantize_params
from qbench.tvm.fixed_point import quantize_multiplier
from qbench.tvm.int8_lowering import float_compute_ops

fast = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
per_op = settings(
    deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------ 1. fixed point
def _gemmlowp(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier, written from its C definition with Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    ab = (x * (1 << left)) * multiplier
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    high = abs(num) // (1 << 31) * (1 if num >= 0 else -1)  # C division truncates toward zero
    mask = (1 << right) - 1
    remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


@fast
@given(st.lists(st.floats(2.0**-20, 4.0), min_size=1, max_size=4), st.data())
def test_numpy_multiply_by_quantized_multiplier_matches_gemmlowp(real, data):
    """The numpy form that fills the lookup tables (ADD and MUL by a constant) is TFLite's arithmetic."""
    from qbench.tvm.fixed_point import multiply_by_quantized_multiplier

    m, s = quantize_multiplier(real)
    x = data.draw(hnp.arrays(np.int64, (8, len(real)), elements=st.integers(-(2**26), 2**26)), label="x")
    got = multiply_by_quantized_multiplier(x, m, s)
    assert got.tolist() == [[_gemmlowp(int(v), int(m[c]), int(s[c])) for c, v in enumerate(row)] for row in x]


def _single_rounding(x: int, multiplier: int, shift: int) -> int:
    """The one-rounding requantization LiteRT's reference FULLY_CONNECTED uses."""
    total = 31 - shift
    return (x * multiplier + (1 << (total - 1))) >> total


reals = st.floats(min_value=2.0**-30, max_value=2.0**8, allow_nan=False, allow_infinity=False)


@fast
@given(reals)
def test_quantize_multiplier_represents_the_real_scale(real):
    (m,), (shift,) = quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2.0**-31


@functools.cache
def _compiled_rescale(channels: int, multipliers: tuple, shifts: tuple):
    """The Relax int64 rescale (ADD, MUL, MEAN) on a (4, channels) int32 accumulator."""
    import tvm
    from tvm import relax

    from qbench.tvm.fixed_point import rescale as _rescale

    x = relax.Var("acc", relax.TensorType((4, channels), "int32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        out = bb.emit(_rescale(x, np.array(multipliers, np.int64), np.array(shifts, np.int64)))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target="llvm"), tvm.cpu())
    return lambda a: vm["main"](tvm.runtime.tensor(a)).numpy()


def _compiled_requantize(channels: int, single: bool, shift, lanes: int = 1):
    """The conv/dense requantize kernel (int8 out) on a (4, channels) int32 accumulator, made for
    ``shift`` (left shifts or not, right shifts everywhere or not) as the lowering makes it; with
    ``lanes``, vectorized over that many channels and compiled through qbench's TIR pipeline (the
    even/odd ``vpmuldq`` products of :mod:`qbench.tvm.paired_products`)."""
    from qbench.tvm.avx2_int8_kernels import requantize_shifts

    return _requantize_kernel(channels, single, *requantize_shifts(shift), lanes)[0]


def _vector_target(lanes: int) -> dict:
    """16 lanes for this CPU where it has AVX-512 (a zmm register each), else AVX2 (8 lanes a ymm)."""
    from qbench.tvm.cpu_schedule import EPILOGUE_LANES_AVX512

    host = _host()[0]
    if lanes == EPILOGUE_LANES_AVX512 and _has_avx512(host):
        return host
    return {"kind": "llvm", "mcpu": "core-avx2"}


def _has_avx512(spec: dict) -> bool:
    """The target's epilogues take AVX-512's 16 lanes (what the schedule itself asks)."""
    import tvm

    from qbench.tvm.cpu_schedule import EPILOGUE_LANES_AVX512, epilogue_lanes

    return epilogue_lanes(tvm.target.Target(spec)) == EPILOGUE_LANES_AVX512


@functools.cache
def _requantize_kernel(channels: int, single: bool, shifts_left: bool, always_right: bool, lanes: int = 1):
    """(compiled kernel, its assembly or "" when scalar)."""
    import tvm
    from tvm import s_tir

    from qbench.tvm import paired_products
    from qbench.tvm.avx2_int8_kernels import requantize_prim_func

    func = requantize_prim_func((4, channels), "int8", single, shifts_left, always_right)
    if lanes == 1:
        return tvm.compile(tvm.IRModule({"main": func}), target="llvm")["main"], ""
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("requantize")
    sch.vectorize(sch.split(sch.get_loops(block)[-1], factors=[None, lanes])[1])
    target = tvm.target.Target(_vector_target(lanes))
    lib = tvm.compile(sch.mod, target=target, tir_pipeline=paired_products.register())
    return lib["main"], lib.mod.inspect_source("asm")


scale_lists = st.integers(1, 4).flatmap(lambda n: st.lists(st.floats(2.0**-20, 4.0), min_size=n, max_size=n))


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(scale_lists, st.data())
def test_relax_rescale_matches_gemmlowp_per_channel(real, data):
    m, s = quantize_multiplier(real)
    acc = data.draw(hnp.arrays(np.int32, (4, len(real)), elements=st.integers(-(2**22), 2**22)), label="acc")
    got = _compiled_rescale(len(real), tuple(m.tolist()), tuple(s.tolist()))(acc)
    assert got.tolist() == [[_gemmlowp(int(v), int(m[c]), int(s[c])) for c, v in enumerate(row)] for row in acc]


@pytest.mark.parametrize("single", [False, True], ids=["two-roundings", "one-rounding"])
@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(real=scale_lists, zero_point=st.integers(-128, 127), data=st.data())
def test_requantize_kernel_matches_tflite(single, real, zero_point, data):
    """TFLite's requantization (two roundings, or one for FULLY_CONNECTED), zero point, clamp (the
    bias is in the accumulator: the dot-product kernels start from it)."""
    _check_requantize(real, single, zero_point, data)


def _check_requantize(real, single: bool, zero_point: int, data, lanes: int = 1) -> None:
    """The requantize kernel (``lanes``: vectorized over that many channels) on drawn accumulators
    against the oracle, per channel scale in ``real``."""
    import tvm

    m, s = quantize_multiplier(real)
    n = len(real)
    acc = data.draw(hnp.arrays(np.int32, (4, n), elements=st.integers(-(2**22), 2**22)), label="acc")
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (acc, *requantize_params(m, s, zero_point, single))]
    oracle = _single_rounding if single else _gemmlowp
    want = [[min(127, max(-128, oracle(int(v), int(m[c]), int(s[c])) + zero_point)) for c, v in enumerate(row)] for row in acc]
    out = tvm.runtime.tensor(np.zeros((4, n), np.int8))
    _compiled_requantize(n, single, s, lanes)(*args, out)
    assert out.numpy().tolist() == want


@pytest.mark.parametrize("lanes", [1, 8, 16], ids=["scalar", "8-lanes", "16-lanes"])
@pytest.mark.parametrize("single", [False, True], ids=["two-roundings", "one-rounding"])
def test_requantize_kernel_rounds_ties_as_tflite(single, lanes):
    """Power-of-two scales put every other accumulator on an exact tie, negative ones included:
    where gemmlowp's rounding differs from rounding half up (random accumulators rarely land there).
    Vectorized, each scale is on even and on odd lanes (the two halves of the paired products).
    """
    import tvm

    channels = max(4, lanes)
    real = [0.25, 0.125, 2.0**-5, 2.0**-9, 2.0**-3] * (channels // 5 + 1)
    m, s = quantize_multiplier(real[:channels])
    assert (s < 0).all()
    # every lane sees every accumulator in -1024..1023, its neighbours a different one in the same row
    acc = np.stack([np.roll(np.arange(-1024, 1024, dtype=np.int32), 7 * c) for c in range(channels)], axis=1)
    oracle = _single_rounding if single else _gemmlowp
    for rows in np.split(acc, acc.shape[0] // 4):
        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in (rows, *requantize_params(m, s, 0, single))]
        out = tvm.runtime.tensor(np.zeros((4, channels), np.int8))
        _compiled_requantize(channels, single, s, lanes)(*args, out)
        want = [[min(127, max(-128, oracle(int(v), int(m[c]), int(s[c])))) for c, v in enumerate(row)] for row in rows]
        assert out.numpy().tolist() == want


@pytest.mark.parametrize("lanes", [8, 16], ids=["8-lanes", "16-lanes"])
@pytest.mark.parametrize("single", [False, True], ids=["two-roundings", "one-rounding"])
@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(zero_point=st.integers(-128, 127), data=st.data())
def test_paired_products_requantize_matches_tflite(single, lanes, zero_point, data):
    """The requantize kernel vectorized and rewritten into even/odd ``vpmuldq`` products
    (:mod:`qbench.tvm.paired_products`) is TFLite's arithmetic on every lane: drawn scales (left
    shifts among them) and accumulators on 2 vectors of channels."""
    channels = 2 * lanes
    real = data.draw(st.lists(st.floats(2.0**-20, 4.0), min_size=channels, max_size=channels), label="scales")
    _check_requantize(real, single, zero_point, data, lanes)


@pytest.mark.parametrize("lanes", [8, 16], ids=["8-lanes", "16-lanes"])
def test_paired_products_leave_no_widening(lanes):
    """After the rewrite the product needs no int32 -> int64 widening (``vpmovsxdq``/``vpmovzxdq``):
    LLVM emitted 4 per vector for the 16-lane int64 expression before it.  AVX2's 8 lanes keep
    LLVM's lowering (the rewrite measured slower there), widening included."""
    from qbench.tvm import paired_products

    if lanes == 16 and not _has_avx512(_vector_target(16)):
        pytest.skip(f"this CPU ({_host()[0]['mcpu']}) has no AVX-512: 16 lanes would compile as AVX2")
    _, asm = _requantize_kernel(2 * lanes, False, False, True, lanes)
    body = asm[asm.index("main_compute_:") :]
    assert "vpmuldq" in body
    widening = [w for w in ("vpmovsxdq", "vpmovzxdq") if w in body]
    if lanes >= paired_products.MIN_LANES:
        assert not widening, f"widening left after {paired_products.PIPELINE}"
    else:
        assert widening, "AVX2's 8 lanes were rewritten"


@pytest.mark.parametrize("byte_permutes", [False, True], ids=["gather", "vpermi2b"])
@pytest.mark.parametrize("in_dtype", ["int8", "uint8"])
@pytest.mark.parametrize("shape", [(1, 8, 8, 3), (5, 7, 3), (2, 64)], ids=["3-blocks", "block-and-tail", "2-blocks"])
def test_lookup_kernel_reads_the_table_at_each_value(byte_permutes, in_dtype, shape):
    """Every 8-bit value, in blocks of 64 and in the tail, picks its own table entry (the sign of a
    lane chooses the half of the table ``vpermi2b`` reads)."""
    import tvm

    from qbench.backends.tvm import has_byte_permutes
    from qbench.tvm.avx2_int8_kernels import lookup_prim_func, lookup_table_dtype

    spec = _host()[0] if byte_permutes else {"kind": "llvm", "mcpu": "core-avx2"}
    if byte_permutes and not has_byte_permutes(spec):
        pytest.skip(f"this CPU ({spec['mcpu']}) has no AVX-512 VBMI")
    info = np.iinfo(in_dtype)
    x = (np.arange(int(np.prod(shape))) * 37 % 256 + int(info.min)).astype(in_dtype).reshape(shape)
    table = np.random.default_rng(1).integers(-128, 128, 256).astype(np.int8)
    func = lookup_prim_func(shape, in_dtype, "int8", byte_permutes)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target(spec))
    out = tvm.runtime.tensor(np.zeros(shape, np.int8))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(table.astype(lookup_table_dtype(byte_permutes, "int8"))), out)
    assert out.numpy().tolist() == table[x.astype(np.int64) - int(info.min)].tolist()


# ------------------------------------------------- 2. one-op models vs LiteRT's reference kernels
def _one_op_keras(kind: str, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    if kind == "conv2d":
        x = keras.Input((9, 9, 5))
        y = L.Conv2D(7, 3, strides=2, padding="same", activation="relu6")(x)
    elif kind in ("conv2d-taps", "conv2d-taps-vnni"):  # the stem's shape: 3 channels, 27 taps, OC of 16
        x = keras.Input((9, 9, 3))
        y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    elif kind == "depthwise":
        x = keras.Input((8, 8, 6))
        y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    elif kind == "depthwise-blocks":  # channels a multiple of 16: the epilogue goes under the channel-block loop
        x = keras.Input((6, 6, 32))
        y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    elif kind == "pointwise":  # 1x1, even IC, OC a multiple of 8: the vpmaddwd kernel (even width: pixel pairs)
        x = keras.Input((6, 8, 10))
        y = L.Conv2D(16, 1, activation="relu6")(x)
    elif kind == "dense":  # 9 output channels: zero-padded to 16 for the vpmaddwd kernel
        x = keras.Input((24,))
        y = L.Dense(9)(x)
    elif kind == "dense-pairs":  # the vpmaddwd kernel
        x = keras.Input((24,))
        y = L.Dense(16)(x)
    elif kind == "pointwise-vnni":  # IC a multiple of 4, OC of 16: vpdpbusd, 16 lanes (8 on AVX-VNNI)
        x = keras.Input((5, 6, 12))
        y = L.Conv2D(32, 1, activation="relu6")(x)
    elif kind == "pointwise-amx":  # IC 96 (two tile steps of 48), OC 32 (two C tiles), rows of 14 pixels
        x = keras.Input((3, 14, 96))
        y = L.Conv2D(32, 1, activation="relu6")(x)
    elif kind == "pointwise-amx-8":  # OC 24: C tiles of 8 int32 columns; IC 64, one tile step; rows of 10
        x = keras.Input((2, 10, 64))
        y = L.Conv2D(24, 1)(x)
    elif kind == "pointwise-vnni-256":  # OC a multiple of 8, not 16: vpdpbusd, 8 lanes
        x = keras.Input((4, 4, 8))
        y = L.Conv2D(24, 1)(x)
    elif kind == "dense-vnni":
        x = keras.Input((20,))
        y = L.Dense(16)(x)
    elif kind == "dense-vnni-padded":  # a 10-class head: output channels zero-padded to the lanes
        x = keras.Input((20,))
        y = L.Dense(10)(x)
    elif kind == "dense-unpaired":  # an odd input count: no dot-product kernel, the plain int32 matmul
        x = keras.Input((21,))
        y = L.Dense(9)(x)
    elif kind == "add":
        x = [keras.Input((5, 5, 4)), keras.Input((5, 5, 4))]
        y = L.Add()([x[0], L.Lambda(lambda t: t * 3.0)(x[1])])
    elif kind == "rescale":  # MUL and ADD by scalar constants (the input's Rescaling): lookup tables
        x = keras.Input((4, 4, 3))
        y = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    elif kind == "rescale-vbmi":  # the same through vpermi2b (64 elements a block, and a tail of 11)
        x = keras.Input((5, 5, 3))
        y = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    elif kind == "rescale-conv-vnni":  # the stem after the Rescaling: tables and the data offset in one
        x = keras.Input((9, 9, 3))
        y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(L.Rescaling(1 / 127.5, offset=-1.0)(x))
    elif kind == "mean":
        x = keras.Input((6, 6, 8))
        y = L.GlobalAveragePooling2D()(x)
    return keras.Model(x, y)


HOST_VNNI = None  # the host CPU's vpdpbusd lanes (qbench.backends.tvm.host_target), found once


def _host():
    global HOST_VNNI
    from qbench.backends.kernels import machine_flags
    from qbench.backends.tvm import host_target

    if HOST_VNNI is None:
        HOST_VNNI = host_target(1, machine_flags())
    return HOST_VNNI


@functools.cache
def _one_op_tflite(kind: str, seed: int) -> bytes:
    """The one-op Keras model of ``kind``, nonzero biases, converted to a full-integer int8 .tflite."""
    import tensorflow as tf

    model = _one_op_keras(kind, seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # Keras starts biases at 0; the kernels start their accumulators from them
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.5, tuple(layer.bias.shape)).astype(np.float32))
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]

    def representative():
        for _ in range(32):
            yield [rng.normal(0, 1.5, (1, *s)).astype(np.float32) for s in shapes]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@functools.cache
def _one_op_case(kind: str, seed: int):
    """(int8 .tflite bytes, lowered-and-compiled TVM function, LiteRT reference interpreter, lowering counts);
    a ``-vnni`` kind is compiled for this CPU with its ``vpdpbusd`` kernels, an ``-amx`` one with its tiles."""
    import tvm
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tvm import relax

    from qbench.backends.tvm import has_byte_permutes, relax_module, tvm_target_spec
    from qbench.tvm.cpu_schedule import compile_module, cpu_pipeline

    buf = _one_op_tflite(kind, seed)
    host = "vnni" in kind or "vbmi" in kind or "amx" in kind
    spec, vnni = _host() if host else (tvm_target_spec(1), ())
    tiles = "amx" in kind
    if tiles:  # a one-op model is far below the multiply-adds from which a model gets tiles
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(amx_int8_kernels, "MIN_MODEL_MACS", 0)
            mod, counts = relax_module(buf, vnni, has_byte_permutes(spec), True)
    else:
        mod, counts = relax_module(buf, vnni, host and has_byte_permutes(spec))
    assert not float_compute_ops(mod), f"{kind}: float compute left after lowering: {float_compute_ops(mod)}"
    target = tvm.target.Target(spec)
    vm = relax.VirtualMachine(compile_module(mod, target, cpu_pipeline(target, 0)), tvm.cpu())
    ref = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    return buf, vm["main"], ref, counts


def _run_reference(ref, inputs):
    details = sorted(ref.get_input_details(), key=lambda d: d["index"])
    for d, a in zip(details, inputs, strict=True):
        ref.set_tensor(d["index"], a)
    ref.invoke()
    return ref.get_tensor(ref.get_output_details()[0]["index"])


EXPECTED_PATTERN = {
    "conv2d": ("conv2d", "via int16 products"),  # 7 output channels: no dot-product kernel fits
    "conv2d-taps": ("conv2d", "via taps of vpmaddwd"),
    "conv2d-taps-vnni": ("conv2d", "via taps of vpdpbusd x16"),
    "pointwise": ("conv2d", "via vpmaddwd"),
    "depthwise": ("conv2d-depthwise", "via int16 products"),
    "dense": ("dense", "via vpmaddwd"),
    "dense-unpaired": ("dense",),
    "dense-pairs": ("dense", "via vpmaddwd"),
    "add": ("add", "mul", "via lookup table"),  # the second input goes through a MUL by a constant first
    "rescale": {"mul": 1, "add": 1, "via lookup table": 2},
    "rescale-vbmi": {"mul": 1, "add": 1, "via lookup table": 2},
    "mean": ("mean",),
    "pointwise-vnni": ("conv2d", "via vpdpbusd x16"),
    "pointwise-vnni-256": ("conv2d", "via vpdpbusd x8"),
    "pointwise-amx": ("conv2d", "via tdpbusd"),
    "pointwise-amx-8": ("conv2d", "via tdpbusd"),
    "dense-vnni": ("dense", "via vpdpbusd x16"),
    "dense-vnni-padded": ("dense", "via vpdpbusd x16"),
    "rescale-conv-vnni": {"mul": 1, "add": 1, "via lookup table": 2, "conv2d": 1, "via taps of vpdpbusd x16": 1},
}


@pytest.mark.parametrize("kind, lookups", [("rescale", 1), ("rescale-vbmi", 1), ("rescale-conv-vnni", 1), ("add", 1)])
def test_tables_compose_into_one_pass(kind, lookups):
    """A Rescaling's MUL and ADD tables are one table, and a ``vpdpbusd`` convolution's data offset
    (+128, to uint8) goes into it too: one lookup kernel reads the input, nothing else rewrites it.
    (Before, the ADD's table never found the MUL's through the binding between them: two lookups and
    an offset kernel on the 64x64 model's input.)"""
    from tvm import relax

    from qbench.backends.tvm import has_byte_permutes, relax_module, tvm_target_spec
    from qbench.tvm.avx2_int8_kernels import LOOKUP_BLOCK

    host = "vnni" in kind or "vbmi" in kind
    if host and not (16 in _host()[1] if "vnni" in kind else has_byte_permutes(_host()[0])):
        pytest.skip(f"this CPU ({_host()[0]['mcpu']}) has neither 16-lane vpdpbusd nor VBMI as {kind} needs")
    spec, vnni = _host() if host else (tvm_target_spec(1), ())
    mod, _ = relax_module(_one_op_case(kind, 0)[0], vnni, host and has_byte_permutes(spec))
    calls = []

    def visit(node):
        if isinstance(node, relax.Call) and getattr(node.op, "name", "") == "relax.call_tir":
            calls.append(node.args[0].name_hint)

    relax.analysis.post_order_visit(mod["main"], visit)
    assert sum(name.startswith(LOOKUP_BLOCK) for name in calls) == lookups, calls
    if kind == "rescale-conv-vnni":
        assert not [c for c in calls if not c.startswith((LOOKUP_BLOCK, "matmul_vpdpbusd", "requantize"))], calls


@pytest.mark.parametrize("kind", list(EXPECTED_PATTERN))
@per_op
@given(seed=st.sampled_from([0, 1]), data=st.data())
def test_lowered_op_matches_litert_reference_kernels(kind, seed, data):
    import tvm

    if "vnni" in kind:
        lanes = _host()[1]
        want_lanes = 8 if kind.endswith("-256") else 16
        if want_lanes not in lanes:
            pytest.skip(f"this CPU has no {want_lanes}-lane vpdpbusd (AVX-512 VNNI / AVX-VNNI): lanes {lanes or 'none'}")
    if "amx" in kind:
        from qbench.backends.tvm import has_amx_tiles

        if not has_amx_tiles(_host()[0]):
            pytest.skip(f"this CPU ({_host()[0]['mcpu']}) has no AMX int8 tiles, or Linux did not grant them")
    if "vbmi" in kind:
        from qbench.backends.tvm import has_byte_permutes

        if not has_byte_permutes(_host()[0]):
            pytest.skip(f"this CPU ({_host()[0]['mcpu']}) has no AVX-512 VBMI: lookup tables take the gather path")
    _, fn, ref, counts = _one_op_case(kind, seed)
    expected = EXPECTED_PATTERN[kind]
    assert counts == (expected if isinstance(expected, dict) else {pattern: 1 for pattern in expected}), counts
    details = sorted(ref.get_input_details(), key=lambda d: d["index"])
    inputs = [
        data.draw(hnp.arrays(np.int8, tuple(int(n) for n in d["shape"])), label=f"input {i}") for i, d in enumerate(details)
    ]
    want = _run_reference(ref, inputs)
    out = fn(*[tvm.runtime.tensor(a) for a in inputs])
    got = (out if hasattr(out, "numpy") else out[0]).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() == 0, f"{kind}: {int((diff > 0).sum())} of {diff.size} outputs differ, by up to {diff.max()} LSB"


def test_a_model_gets_amx_tiles_only_from_enough_multiply_adds(monkeypatch):
    """Tile code slows the rest of a model down (the 64x64 model took 1.06-1.12x with tiles), so a
    model gets them only from MIN_MODEL_MACS multiply-adds in the convolutions they would run."""
    from qbench.backends.tvm import relax_module

    buf = _one_op_tflite("pointwise-amx", 0)
    assert relax_module(buf, (16,), False, True)[1] == {"conv2d": 1, "via vpdpbusd x16": 1}
    monkeypatch.setattr(amx_int8_kernels, "MIN_MODEL_MACS", 3 * 14 * 96 * 32)  # exactly this model's
    assert relax_module(buf, (16,), False, True)[1] == {"conv2d": 1, "via tdpbusd": 1}
    assert relax_module(buf, (16,), False, False)[1] == {"conv2d": 1, "via vpdpbusd x16": 1}


def test_amx_kernel_compiles_to_tiles_configured_and_released():
    """On any x86 host (LLVM compiles for an AMX CPU anywhere): the tile kernel's code loads the tile
    configuration, multiplies with tdpbusd, stores C and releases the tiles."""
    import tvm
    from tvm import s_tir
    from tvm.s_tir import dlight

    sch = s_tir.Schedule(tvm.IRModule({"main": amx_int8_kernels.matmul_prim_func((1, 3, 14), 96, 32, 16)}))
    block = next(i for i in dlight.analysis.normalize_prim_func(sch) if sch.get(i.block_rv).name_hint == amx_int8_kernels.BLOCK)
    amx_int8_kernels.schedule_block(sch, block, parallel=False)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids", "mattr": list(amx_int8_kernels.FEATURES)})
    asm = tvm.compile(amx_int8_kernels.configure_tiles(sch.mod), target=target).mod.inspect_source("asm")
    for instruction in ("ldtilecfg", "tileloadd", "tdpbusd", "tilestored", "tilerelease"):
        assert instruction in asm, instruction
    assert asm.count("tdpbusd") >= 2 * 2  # two depth steps of 48 for each of the two C tiles (OC 32)


@pytest.mark.parametrize(
    "width, channels, rows, depth", [(112, 96, 14, 48), (56, 576, 14, 64), (7, 960, 7, 64), (32, 160, 8, 40), (2, 64, 2, 64)]
)
def test_amx_tile_shapes(width, channels, rows, depth):
    """A tile holds at most 15 pixels of one image row (16 would make C 1 KiB, a workspace allocation
    per tile) and up to 64 input channels, each a divisor."""
    assert (amx_int8_kernels.tile_rows(width), amx_int8_kernels.tile_depth(channels)) == (rows, depth)
    for lanes in amx_int8_kernels.LANES:
        config = amx_int8_kernels.tile_config(rows, depth, lanes)
        assert config[0] == 1 and config[48:51] == [rows, rows, depth // 4]
        assert [config[16 + 2 * t] | config[17 + 2 * t] << 8 for t in range(3)] == [4 * lanes, depth, 4 * lanes]
