"""Integer lowering for TVM: the int8 ops Relax ``from_tflite`` emulates in float32, done in integers.

Why: ``from_tflite`` lowers every int8 TFLite op to ``dequantize -> float32 op
-> quantize``, so ``tvm-avx2-int8`` was a float model with extra steps (slower
than LiteRT int8, and rounding differently from it).  This pass rewrites those
patterns into what TFLite's reference kernels compute:

* CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED: ``(x - zx)`` convolved or
  multiplied with the int8 weights into int32, plus the int32 bias, then
  requantized per output channel, through the kernels of
  :mod:`qbench.tvm.avx2_int8_kernels` (``vpmaddwd`` pairs for 1x1, dense and
  KxK convolutions (their taps as two more reductions),
  or ``vpdpbusd`` quads from :mod:`qbench.tvm.vnni_int8_kernels` on a VNNI
  target; int16 products for depthwise, and KxK whose channels fit neither; Relax's int32 ``conv2d``/``matmul``
  where a shape does not fit them);
* ADD and MUL: TFLite's integer formulas (for ADD: both inputs shifted left by
  20 bits and rescaled, summed, rescaled again); where one operand is a scalar
  constant and the other 8-bit, a 256-entry table of what those formulas give
  (a MUL's table followed by an ADD's is one table);
* MEAN: the int32 sum, rescaled in fixed point as LiteRT's reference kernel
  does (the element count folded into the multiplier).

Requantization is TFLite's ``MultiplyByQuantizedMultiplier`` (a 31-bit
fixed-point multiplier and a shift per channel, ``QuantizeMultiplier`` of the
real scale, rounding as gemmlowp's ``SaturatingRoundingDoublingHighMul`` and
``RoundingDivideByPOT`` do), with a 64-bit product so it is exact.  Every
requantization to an int8 output (each op's last step, ADD's and MEAN's included)
is one kernel, ``requantize``; ADD's two input rescales, which have no zero point
or clamp, are Relax int64 ops (:func:`qbench.tvm.fixed_point.rescale`).  FULLY_CONNECTED
rounds once instead, as LiteRT's reference kernel does: over 200 random inputs
on two one-op models each, two roundings differed from it on 2-5 outputs and
one rounding on none, while the convolutions matched two roundings on every
output.  What is left
in float is SOFTMAX (its input and output quantization included): it is not a
convolution or matmul, and it is one op on ten values.

:func:`lower_int8` returns the rewritten module and how many of each pattern it
rewrote; :func:`float_compute_ops` lists the float conv2d / matmul calls left
(the variant's test asserts there are none).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from qbench.tvm.fixed_point import ADD_LEFT_SHIFT, centred, const, quantize_multiplier, rescale

FLOAT_COMPUTE_OPS = ("relax.nn.conv2d", "relax.matmul", "relax.linear", "relax.nn.dense")


# -------------------------------------------------------------------------------- patterns
def _numpy(expr) -> np.ndarray | None:
    """A constant's value (``relax.Constant`` or ``tvm.ir.GenericConst``), else None."""
    value = getattr(expr, "value", None)
    if value is not None and hasattr(value, "numpy"):
        return value.numpy()
    return None


def _qparams(call):
    """(data, scale array, zero-point array, axis) of a ``relax.dequantize``/``quantize`` call."""
    return call.args[0], _numpy(call.args[1]), _numpy(call.args[2]), int(call.attrs.axis)


def _int_const_tensor(expr) -> np.ndarray | None:
    """An integer weight: a constant, or a constant through ``permute_dims``."""
    from tvm import relax

    a = _numpy(expr)
    if a is not None:
        return a
    if isinstance(expr, relax.Call) and expr.op.name == "relax.permute_dims":
        inner = _int_const_tensor(expr.args[0])
        if inner is None:
            return None
        axes = expr.attrs.axes
        return np.transpose(inner, [int(a) for a in axes] if axes is not None else None)
    return None


def _patterns() -> dict:
    """kind -> (pattern rooted at the output ``quantize``, the named sub-patterns its rewriter reads)."""
    from tvm.relax.dpl import is_op, wildcard

    dq, quantize = is_op("relax.dequantize"), is_op("relax.quantize")

    def linear(core_op: str):
        p = {"x": dq(wildcard(), wildcard(), wildcard()), "w_permuted": is_op("relax.permute_dims")(wildcard())}
        p["w"] = dq(p["w_permuted"] | wildcard(), wildcard(), wildcard())
        p["w_shaped"] = is_op("relax.reshape")(p["w"], wildcard()) | p["w"]
        p["core"] = is_op(core_op)(p["x"], p["w_shaped"])
        p["bias"] = dq(wildcard(), wildcard(), wildcard())
        p["biased"] = is_op("relax.add")(p["core"], p["bias"])
        p["out"] = quantize(p["biased"] | p["core"], wildcard(), wildcard())
        return p["out"], p

    def two_inputs(core_op: str):
        p = {"a": dq(wildcard(), wildcard(), wildcard()), "b": dq(wildcard(), wildcard(), wildcard())}
        p["core"] = is_op(core_op)(p["a"], p["b"])
        p["out"] = quantize(p["core"], wildcard(), wildcard())
        return p["out"], p

    def mean():
        p = {"x": dq(wildcard(), wildcard(), wildcard())}
        p["core"] = is_op("relax.mean")(p["x"])
        p["out"] = quantize(p["core"], wildcard(), wildcard())
        return p["out"], p

    return {
        # MUL before ADD: an ADD of a constant after a MUL by one (a Rescaling) composes the two tables;
        # both before the convolutions, so the stem's data offset goes into the same table
        "mul": two_inputs("relax.multiply"),
        "add": two_inputs("relax.add"),
        "conv2d": linear("relax.nn.conv2d"),
        "dense": linear("relax.matmul"),
        "mean": mean(),
    }


def _scalars(*arrays) -> bool:
    return all(a is not None and a.size == 1 for a in arrays)


@dataclass
class _Lowering:
    """What one :func:`lower_int8` call accumulates: pattern counts, and the kernels it adds."""

    builder: object  # a relax.BlockBuilder over the module: it types the kernels' GlobalVars
    vnni: tuple[int, ...] = ()  # int32 lanes of the CPU's vpdpbusd (16: AVX-512 VNNI, 8: AVX-VNNI or VL); () for none
    byte_permutes: bool = False  # the CPU has AVX-512 VBMI's vpermi2b (lookup tables 64 bytes at a time)
    amx: bool = False  # the CPU has AMX int8 tiles (tdpbusd) and the target enables them
    tile_macs: int = 0  # multiply-adds the lowering gave AMX tiles
    counts: Counter = field(default_factory=Counter)
    kernels: dict = field(default_factory=dict)  # (name, key) -> GlobalVar
    bindings: dict = field(default_factory=dict)  # Var -> the expression bound to it, before this pattern's pass

    def kernel(self, name: str, key: tuple, build):
        """The GlobalVar of kernel ``name`` for ``key`` (one PrimFunc per distinct shape)."""
        if (name, key) not in self.kernels:
            symbol = f"{name}_{len(self.kernels)}"
            self.kernels[name, key] = self.builder.add_func(build().with_attr("global_symbol", symbol), symbol)
        return self.kernels[name, key]


def _pairwise_kernel(kind: str, core, x, zx, weight: np.ndarray, bias: np.ndarray, out, lowering: _Lowering):
    """The int32 accumulator (from ``bias`` per channel) of a conv2d (pointwise, or KxK with its taps as
    reductions) or dense through a dot-product kernel, and the pattern's name: ``vpdpbusd``
    (:mod:`qbench.tvm.vnni_int8_kernels`, where ``lowering.vnni`` offers lanes the channels fit), else
    ``vpmaddwd`` (:mod:`qbench.tvm.avx2_int8_kernels`); None when the op does not qualify (depthwise, or
    a KxK convolution whose output channels no kernel's lanes divide).  A matmul's output channels are
    zero-padded up to the kernel's lanes and the accumulator cut back: the 64x64 model's 10-class
    head ran as a scalar int32 matmul, 4 % of the model on one thread (``perf``)."""
    from tvm import relax

    from qbench.tvm import amx_int8_kernels as amx
    from qbench.tvm import avx2_int8_kernels as avx2
    from qbench.tvm import vnni_int8_kernels as vnni

    spatial = None  # a KxK convolution: its key for avx2_int8_kernels.grouped_conv_prim_func, but the lanes
    if kind == "conv2d":
        a = core.attrs
        if int(a.groups) != 1 or (a.data_layout, a.kernel_layout, a.out_layout) != ("NHWC", "HWIO", "NHWC"):
            return None
        pointwise = (
            weight.shape[:2] == (1, 1)
            and [int(v) for v in a.strides] == [1, 1]
            and [int(v) for v in a.dilation] == [1, 1]
            and not any(int(v) for v in a.padding)
        )
        if not pointwise:
            if len(x.ty.shape.values) != 4:
                return None
            spatial = (
                tuple(int(v) for v in x.ty.shape.values),
                tuple(int(v) for v in weight.shape[:2]),
                tuple(int(v) for v in out.ty.shape.values),
                tuple(int(v) for v in a.strides),
                tuple(int(v) for v in a.padding),
                tuple(int(v) for v in a.dilation),
            )
    in_channels, out_channels = weight.shape[-2:]
    lead = tuple(int(v) for v in out.ty.shape.values[:-1])
    zero_point = int(zx.reshape(()))
    flat = weight.reshape(-1, out_channels)  # (taps x IC, OC)

    def kernel(module, lanes: int, group: int, dtypes: tuple[str, str], fill: int, channels: int):
        """The GlobalVar and packed weights of a matmul (pointwise, dense) or KxK kernel of ``module``,
        ``channels`` output channels (a matmul's zero-padded to them)."""
        if spatial is None:
            shape = (lead, in_channels, channels) if module is avx2 else (lead, in_channels, channels, lanes)
            gvar = lowering.kernel(module.BLOCK, shape, lambda: module.matmul_prim_func(*shape))
            wide = np.pad(flat, ((0, 0), (0, channels - out_channels)))
            packed = avx2.pack_weights(wide) if module is avx2 else vnni.pack_weights(wide, lanes)  # amx's as vnni's
            return gvar, packed
        key = (*spatial, lanes, group, dtypes, module.BLOCK, fill)
        gvar = lowering.kernel(module.BLOCK, key, lambda: avx2.grouped_conv_prim_func(*key))
        return gvar, avx2.pack_conv_weights(weight, lanes, group, dtypes[1])

    def accumulate(gvar, data, packed, dtype: str, start: np.ndarray, channels: int):
        """The kernel's int32 accumulator from ``start`` per channel, cut back to the op's output channels."""
        start = np.pad(start, (0, channels - out_channels)).astype(np.int32)
        args = relax.Tuple([data, const(packed, dtype), const(start, "int32")])
        acc = relax.call_tir(gvar, args, out_ty=relax.TensorType((*lead, channels), "int32"))
        if channels == out_channels:
            return acc
        return relax.op.strided_slice(acc, axes=[len(lead)], begin=[0], end=[out_channels])

    label = "via taps of " if spatial is not None else "via "
    pad_to = avx2.round_up if spatial is not None else (lambda c, g: c)  # KxK: input channels padded
    lanes = vnni.lanes_for(pad_to(in_channels, vnni.QUAD), out_channels, lowering.vnni)
    channels = out_channels
    if lanes is None and spatial is None and lowering.vnni and in_channels % vnni.QUAD == 0:
        # a matmul whose output channels no lanes divide (the 10-class head): zero columns up to the widest
        lanes = max(lowering.vnni)
        channels = avx2.round_up(out_channels, lanes)
    if lanes is not None:
        looked_up = _lookup_of(x, lowering) if str(x.ty.dtype) == "int8" else None
        if looked_up is not None:  # the data is a table's (the input's Rescaling): the offset goes into it
            tensor, table = looked_up
            offset = _lookup_call(tensor, table.astype(np.int16) + vnni.OFFSET, "uint8", lowering)
        else:
            offset = relax.op.astype(relax.op.add(relax.op.astype(x, "int16"), const(vnni.OFFSET, "int16")), "uint8")
        # AMX tiles for the pointwise convolutions they pay for, on the same data and weights
        tiles = lowering.amx and spatial is None and lanes in amx.LANES and amx.qualifies(lead, in_channels, channels)
        module = amx if tiles else vnni
        lowering.tile_macs += int(np.prod(lead)) * in_channels * channels if tiles else 0
        # KxK: the padding holds the zero point, offset, so (x - zx) is 0 there after the correction
        gvar, packed = kernel(module, lanes, vnni.QUAD, ("uint8", "int8"), vnni.OFFSET + zero_point, channels)
        start = bias.astype(np.int64) + vnni.offset_correction(flat, zero_point)  # exact in int32: see vnni_int8_kernels
        acc = accumulate(gvar, offset, packed, "int8", start, channels)
        return acc, f"{label}tdpbusd" if tiles else f"{label}vpdpbusd x{lanes}"
    if spatial is None and in_channels % avx2.PAIR == 0:
        channels = avx2.round_up(out_channels, avx2.LANES)  # as above, for vpmaddwd
    if not avx2.qualifies(pad_to(in_channels, avx2.PAIR), channels):
        return None
    gvar, packed = kernel(avx2, avx2.LANES, avx2.PAIR, ("int16", "int16"), 0, channels)
    acc = accumulate(gvar, centred(x, zero_point, "int16"), packed, "int16", bias, channels)
    return acc, f"{label}vpmaddwd"


def _spatial_kernel(core, x, zx, weight: np.ndarray, bias: np.ndarray, out, lowering: _Lowering):
    """The int32 accumulator (from ``bias`` per channel) of a KxK conv2d (regular or depthwise, NHWC)
    through :func:`qbench.tvm.avx2_int8_kernels.spatial_conv_prim_func` (int16 products), or None."""
    from tvm import relax

    from qbench.tvm import avx2_int8_kernels as kernels

    a = core.attrs
    data_shape = tuple(int(v) for v in x.ty.shape.values)
    out_shape = tuple(int(v) for v in out.ty.shape.values)
    groups = int(a.groups)
    depthwise = groups > 1
    if a.data_layout != "NHWC" or a.out_layout != "NHWC" or len(data_shape) != 4:
        return None
    if depthwise and not (a.kernel_layout == "HWOI" and groups == data_shape[3] == out_shape[3] and weight.shape[3] == 1):
        return None
    if not depthwise and a.kernel_layout != "HWIO":
        return None
    key = (
        data_shape,
        tuple(weight.shape),
        out_shape,
        tuple(int(v) for v in a.strides),
        tuple(int(v) for v in a.padding),
        tuple(int(v) for v in a.dilation),
        depthwise,
    )
    gvar = lowering.kernel(kernels.SPATIAL_BLOCK, key, lambda: kernels.spatial_conv_prim_func(*key))
    args = relax.Tuple([centred(x, int(zx.reshape(())), "int16"), const(weight.astype(np.int16), "int16"), const(bias, "int32")])
    return relax.call_tir(gvar, args, out_ty=relax.TensorType(out_shape, "int32"))


def _rewrite_linear(kind: str, m: dict, lowering: _Lowering):
    """conv2d (plain or depthwise) / matmul with int8 weights -> int32 accumulate + bias -> per-channel requantize."""
    from tvm import relax

    op = relax.op
    out = m["out"]
    _, sy, zy, _ = _qparams(out)
    x, sx, zx, _ = _qparams(m["x"])
    _, sw, zw, _ = _qparams(m["w"])
    weight = _int_const_tensor(m["w_permuted"] if "w_permuted" in m else m["w"].args[0])
    if weight is None or weight.dtype != np.int8 or not _scalars(sx, zx, sy, zy) or sw is None or np.any(zw != 0):
        return None
    if m["w_shaped"].op.name == "relax.reshape":  # depthwise: HWIO-ordered scales, kernel reshaped to HWOI
        weight = weight.reshape([int(v) for v in m["w_shaped"].args[1].values])
    channels = int(out.ty.shape.values[-1])
    if sw.size not in (1, channels):
        return None
    sw = np.broadcast_to(sw.astype(np.float64).ravel(), (channels,))
    channel_bias = np.zeros(channels, np.int32)
    if "biased" in m:
        bias = _int_const_tensor(m["bias"].args[0])
        if bias is None or bias.dtype != np.int32:
            return None
        channel_bias = np.broadcast_to(bias.ravel(), (channels,)).astype(np.int32)
    core = m["core"]
    dot = _pairwise_kernel(kind, core, x, zx, weight, channel_bias, out, lowering)
    if dot is not None:
        acc, label = dot
        lowering.counts[label] += 1
    elif kind == "conv2d" and (acc := _spatial_kernel(core, x, zx, weight, channel_bias, out, lowering)) is not None:
        lowering.counts["via int16 products"] += 1
    else:
        data = centred(x, int(zx.reshape(())), "int32")
        w32 = const(weight.astype(np.int32), "int32")
        if kind == "conv2d":
            a = core.attrs
            acc = op.nn.conv2d(
                data,
                w32,
                strides=a.strides,
                padding=a.padding,
                dilation=a.dilation,
                groups=a.groups,
                data_layout=a.data_layout,
                kernel_layout=a.kernel_layout,
                out_layout=a.out_layout,
                out_dtype="int32",
            )
        else:
            acc = op.matmul(data, w32, out_dtype="int32")
        acc = op.add(acc, const(channel_bias, "int32"))  # the kernels above start from the bias
    if kind == "conv2d" and int(core.attrs.groups) > 1:
        kind += "-depthwise"
    # TFLite: effective scale = double(input scale) * double(filter scale) / double(output scale)
    mult, shift = quantize_multiplier(float(sx.reshape(())) * sw / float(sy.reshape(())))
    lowering.counts[kind] += 1
    shape = tuple(int(v) for v in out.ty.shape.values)
    return _requantize(acc, shape, mult, shift, int(zy.reshape(())), str(out.ty.dtype), kind == "dense", lowering)


def _requantize(acc, shape, mult, shift, zero_point: int, out_dtype: str, single_rounding: bool, lowering: _Lowering):
    """``call_tir`` of :func:`qbench.tvm.avx2_int8_kernels.requantize_prim_func` on an int32 accumulator
    (the bias in it)."""
    from tvm import relax

    from qbench.tvm import avx2_int8_kernels as kernels

    key = (shape, out_dtype, single_rounding, *kernels.requantize_shifts(shift))
    gvar = lowering.kernel("requantize", key, lambda: kernels.requantize_prim_func(*key))
    params = kernels.requantize_params(mult, shift, zero_point, single_rounding)
    args = [acc, *(const(p, str(p.dtype)) for p in params)]
    return relax.call_tir(gvar, relax.Tuple(args), out_ty=relax.TensorType(shape, out_dtype))


def _rewrite_two_inputs(kind: str, m: dict, lowering: _Lowering):
    """ADD / MUL of two int8 tensors (either may be a constant), TFLite's integer formulas."""
    from tvm import relax

    op = relax.op
    out = m["out"]
    _, sy, zy, _ = _qparams(out)
    (a, sa, za, _), (b, sb, zb, _) = _qparams(m["a"]), _qparams(m["b"])
    if not _scalars(sa, za, sb, zb, sy, zy):
        return None
    sa, sb, sy = (float(v.reshape(())) for v in (sa, sb, sy))
    za, zb, zy = (int(v.reshape(())) for v in (za, zb, zy))
    if kind == "add":
        twice_max = 2.0 * max(sa, sb)
        ma, sha = quantize_multiplier(sa / twice_max)
        mb, shb = quantize_multiplier(sb / twice_max)
        mult, shift = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * sy))
    else:
        mult, shift = quantize_multiplier(sa * sb / sy)
    lowering.counts[kind] += 1
    rescales = (ma, sha, mb, shb) if kind == "add" else None
    table = _lookup_table(kind, a, b, (za, zb, zy), rescales, mult, shift, out, lowering)
    if table is not None:  # one operand a scalar constant, the other 8-bit: out is a function of 256 values
        lowering.counts["via lookup table"] += 1
        return table
    a64, b64 = centred(a, za, "int64"), centred(b, zb, "int64")
    if kind == "add":
        left = const(ADD_LEFT_SHIFT, "int64")
        total = op.add(rescale(op.left_shift(a64, left), ma, sha), rescale(op.left_shift(b64, left), mb, shb))
    else:
        total = op.multiply(a64, b64)
    # the sum of two rescaled inputs, or a product of two centred int8 values, fits in int32 (as in TFLite)
    return _requantize_scalar(op.astype(total, "int32"), out, mult, shift, zy, lowering)


def _lookup_table(kind: str, a, b, zero_points, input_rescales, mult, shift, out, lowering: _Lowering):
    """ADD or MUL of an 8-bit tensor and a scalar constant (a Keras ``Rescaling``'s ``x * scale +
    offset``, the input's first two ops) as a lookup kernel's call on a 256-entry table, or None when
    the op is not that.  The table holds what the integer formulas give for each input value, computed here
    with the same arithmetic (:func:`qbench.tvm.fixed_point.multiply_by_quantized_multiplier`), so
    it is exact by construction; on the 64x64 model the two ops' 12,288 elements took 14 us of
    int64 arithmetic on one thread (7 % of the model)."""

    from qbench.tvm.fixed_point import multiply_by_quantized_multiplier as mbqm

    za, zb, zy = zero_points
    constants = [_numpy(a), _numpy(b)]
    if sum(c is not None for c in constants) != 1:
        return None
    which = 0 if constants[0] is None else 1  # the tensor's side
    tensor, value = (a, b)[which], constants[1 - which]
    dtype, out_dtype = str(tensor.ty.dtype), str(out.ty.dtype)
    if value.size != 1 or dtype not in ("int8", "uint8") or out_dtype not in ("int8", "uint8"):
        return None
    info = np.iinfo(dtype)
    domain = np.arange(int(info.min), int(info.max) + 1, dtype=np.int64)
    sides = [domain, np.int64(value.reshape(()))] if which == 0 else [np.int64(value.reshape(())), domain]
    ca, cb = sides[0] - za, sides[1] - zb
    if kind == "add":
        ma, sha, mb, shb = input_rescales
        total = mbqm(ca << ADD_LEFT_SHIFT, ma, sha) + mbqm(cb << ADD_LEFT_SHIFT, mb, shb)
    else:
        total = ca * cb
    total = total.astype(np.int32).astype(np.int64)  # the kernels' int32, as in TFLite
    o = np.iinfo(out_dtype)
    table = np.clip(mbqm(total, mult, shift) + zy, o.min, o.max)
    inner = _lookup_of(tensor, lowering)
    if inner is not None:  # a table of a table (MUL then ADD): one table, one pass over the data
        tensor, first = inner
        dtype = str(tensor.ty.dtype)
        table = table[first - int(info.min)]
    return _lookup_call(tensor, table, out_dtype, lowering)


def _lookup_call(tensor, table: np.ndarray, out_dtype: str, lowering: _Lowering):
    """A lookup kernel's call: ``table[tensor - min]``, ``tensor`` 8-bit, the table's values ``out_dtype``."""
    from tvm import relax

    from qbench.tvm import avx2_int8_kernels as kernels

    shape = tuple(int(v) for v in tensor.ty.shape.values)
    key = (shape, str(tensor.ty.dtype), out_dtype, lowering.byte_permutes)
    gvar = lowering.kernel(kernels.LOOKUP_BLOCK, key, lambda: kernels.lookup_prim_func(*key))
    table_dtype = kernels.lookup_table_dtype(lowering.byte_permutes, out_dtype)
    args = relax.Tuple([tensor, const(table.astype(table_dtype), table_dtype)])
    return relax.call_tir(gvar, args, out_ty=relax.TensorType(shape, out_dtype))


def _lookup_of(expr, lowering: _Lowering):
    """(the 8-bit tensor, its table) when ``expr`` is a lookup kernel's call, else None."""
    from tvm import relax

    from qbench.tvm import avx2_int8_kernels as kernels

    if isinstance(expr, relax.Var):
        expr = lowering.bindings.get(expr, expr)
    lookups = {gvar for (name, _), gvar in lowering.kernels.items() if name == kernels.LOOKUP_BLOCK}
    if not (isinstance(expr, relax.Call) and expr.op.name == "relax.call_tir" and expr.args[0] in lookups):
        return None
    tensor, table = expr.args[1].fields
    return tensor, _numpy(table)


def _rewrite_mean(kind: str, m: dict, lowering: _Lowering):
    """MEAN as LiteRT's reference kernel computes it (``QuantizedMeanOrSum``): the int32 sum of
    ``x - zx``, rescaled by ``sx / sy`` with the element count folded into the fixed-point multiplier
    (``(multiplier << shift) / count``), so it rounds twice, as LiteRT does."""
    out, core = m["out"], m["core"]
    _, sy, zy, _ = _qparams(out)
    x, sx, zx, _ = _qparams(m["x"])
    shape = [int(v) for v in x.ty.shape.values]
    axes = sorted(int(a) % len(shape) for a in core.attrs.axis) if core.attrs.axis is not None else list(range(len(shape)))
    if not _scalars(sx, zx, sy, zy) or (bool(core.attrs.keepdims) and len(shape) == 4 and axes == [1, 2]):
        return None  # keep_dims 4-D spatial means take LiteRT's other integer path: left in float
    from tvm import relax

    op = relax.op
    count = int(np.prod([shape[a] for a in axes]))
    (mult,), (shift,) = quantize_multiplier(float(sx.reshape(())) / float(sy.reshape(())))
    fold = min(count.bit_length() - 1, 32, 31 + int(shift))
    total = op.sum(centred(x, int(zx.reshape(())), "int32"), axis=axes, keepdims=bool(core.attrs.keepdims))
    lowering.counts[kind] += 1
    folded = np.int64((int(mult) << fold) // count)
    return _requantize_scalar(total, out, folded, np.int64(int(shift) - fold), int(zy.reshape(())), lowering)


def _requantize_scalar(acc, out, mult, shift, zero_point: int, lowering: _Lowering):
    """:func:`_requantize` with one multiplier and shift for every element of ``acc`` (int32, the
    shape of ``out``): the same kernel as the convolutions', its per-channel parameters repeated."""
    from tvm import relax

    shape = tuple(int(v) for v in out.ty.shape.values)
    flat = shape or (1,)  # the kernel's channels are the last axis: a scalar becomes one channel
    channels = flat[-1]
    mult = np.full(channels, int(np.asarray(mult).reshape(())), np.int64)
    shift = np.full(channels, int(np.asarray(shift).reshape(())), np.int64)
    acc = acc if shape else relax.op.reshape(acc, flat)
    value = _requantize(acc, flat, mult, shift, zero_point, str(out.ty.dtype), False, lowering)
    return value if shape else relax.op.reshape(value, shape)


_REWRITERS = {
    "conv2d": _rewrite_linear,
    "dense": _rewrite_linear,
    "add": _rewrite_two_inputs,
    "mul": _rewrite_two_inputs,
    "mean": _rewrite_mean,
}


def lower_int8(mod, vnni: tuple[int, ...] = (), byte_permutes: bool = False, amx: bool = False):
    """Rewrite ``mod["main"]``'s int8 patterns into integer arithmetic; returns (module, counts per pattern).
    ``vnni``: the int32 lanes of the target CPU's ``vpdpbusd`` (none: AVX2's ``vpmaddwd`` kernels only);
    ``byte_permutes``: the target has AVX-512 VBMI (``vpermi2b``) for lookup tables; ``amx``: AMX int8
    tiles (:mod:`qbench.tvm.amx_int8_kernels`, with ``vnni``), for a model whose tile-eligible
    convolutions do at least :data:`~qbench.tvm.amx_int8_kernels.MIN_MODEL_MACS` multiply-adds."""
    from qbench.tvm.amx_int8_kernels import MIN_MODEL_MACS

    if amx:
        lowered, counts, macs = _lower_int8(mod, vnni, byte_permutes, True)
        if macs >= MIN_MODEL_MACS:
            return lowered, counts
    return _lower_int8(mod, vnni, byte_permutes, False)[:2]


def _lower_int8(mod, vnni: tuple[int, ...], byte_permutes: bool, amx: bool):
    """:func:`lower_int8`'s rewrite, and the multiply-adds it gave AMX tiles."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    lowering = _Lowering(relax.BlockBuilder(tvm.IRModule(dict(mod.functions), attrs=mod.attrs)), tuple(vnni), byte_permutes, amx)
    fn = mod["main"]
    for kind, (pattern, parts) in _patterns().items():

        def rewrite(expr, matches, kind=kind, parts=parts):
            found = {name: matches[p] for name, p in parts.items() if p in matches}
            new = _REWRITERS[kind](kind, found, lowering)
            return expr if new is None else new

        lowering.bindings = relax.analysis.get_var2val(fn)
        fn = rewrite_call(pattern, rewrite, fn)
    # a table composed into the next one (or into a convolution's offset) leaves its own call unused
    fn = relax.analysis.remove_all_unused(fn)
    lowered = lowering.builder.get()
    lowered.update_func(lowered.get_global_var("main"), fn)
    return lowered, dict(lowering.counts), lowering.tile_macs


def float_compute_ops(mod) -> Counter:
    """Float conv2d / matmul / dense calls in ``mod``'s Relax functions (before legalization)."""
    import tvm
    from tvm import relax

    found: Counter = Counter()

    def visit(node):
        if isinstance(node, relax.Call) and isinstance(node.op, tvm.ir.Op) and node.op.name in FLOAT_COMPUTE_OPS:
            dtype = getattr(node.ty, "dtype", None)
            if dtype in ("float16", "float32", "float64"):
                found[node.op.name] += 1

    for _, fn in mod.functions.items():
        if isinstance(fn, relax.Function):
            relax.analysis.post_order_visit(fn, visit)
    return found
