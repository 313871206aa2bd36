"""AVX2 int8 kernels for TVM: what the integer lowering calls instead of Relax's int32 ops.

* ``matmul_pmaddwd``: pointwise convolution / dense as int16 pairs through ``vpmaddwd``;
* ``conv_int16_products``: KxK and depthwise convolutions with int16 products (``vpmullw``);
* ``requantize``: TFLite's fixed-point requantization of an int32 accumulator.

The pointwise kernel:

Why: an int32 convolution vectorized over output channels multiplies with
``vpmulld`` (8 products per instruction); AVX2's ``vpmaddwd`` multiplies 16
int16 pairs and adds each pair into an int32 lane, exactly (no saturation:
``x - zx`` is at most 255 in magnitude and int8 weights at most 128).  On a
28x28x64 -> 128 pointwise convolution that was 3.1x the throughput of the
``vpmulld`` loop (one probe).  ``vpmaddubsw`` (uint8 x int8) would be faster
still, but it saturates its int16 pair sums, so it would not compute what
TFLite's reference kernels compute.

The layout: the data keeps NHWC (input channels contiguous, read in pairs);
the weights are packed ``[IC/2, OC/8, 8, 2]`` so one 256-bit load holds the
8 output channels' two input-channel weights.  1x1 convolutions (stride 1, no
padding) and dense layers qualify when IC is even and OC a multiple of 8; in
MobileNetV2 they hold almost all multiply-accumulates.
"""

from __future__ import annotations

import functools

import numpy as np

INTRIN = "qbench_avx2_pmaddwd_8x2"
BLOCK = "matmul_pmaddwd"
PAD_BLOCK = "pad"  # the padded copy a KxK dot-product kernel (grouped_conv_prim_func) reads
LANES = 8  # int32 outputs per vpmaddwd
# Output-channel blocks of 8 accumulated together per input pair (one broadcast feeds them all):
# the most that divides the channel count.  Alone, on 2 cores shared with other work, 4 blocks took
# 320 -> 1280 at 7x7 from 0.889 to 0.473 ms and 64 -> 128 at 28x28 from 0.101 to 0.075 ms (interleaved).
OUTPUT_BLOCKS = (4, 3, 2, 1)
PAIR = 2


def dims(*values):
    """TIR int64 extents: Relax shapes are int64, and a kernel's buffers must say so too (FuseTIR
    refuses to map an int32-shaped buffer onto an int64-shaped tensor)."""
    from tvm import tirx

    return tuple(tirx.IntImm("int64", int(v)) for v in values)


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple`` (channels padded to whole groups or lanes)."""
    return -(-value // multiple) * multiple


def qualifies(in_channels: int, out_channels: int) -> bool:
    return in_channels % PAIR == 0 and out_channels % LANES == 0


def pack_weights(weight_ic_oc: np.ndarray) -> np.ndarray:
    """(IC, OC) int8 weights -> (IC/2, OC/8, 8, 2) int16, the layout the intrinsic loads."""
    ic, oc = weight_ic_oc.shape
    return weight_ic_oc.astype(np.int16).reshape(ic // PAIR, PAIR, oc // LANES, LANES).transpose(0, 2, 3, 1).copy()


def matmul_prim_func(lead: tuple[int, ...], in_channels: int, out_channels: int):
    """``out[..., oc] = sum_ic int32(data[..., ic]) * int32(w[ic, oc])`` over packed int16 weights."""
    return grouped_matmul_prim_func(lead, in_channels, out_channels, LANES, PAIR, ("int16", "int16"), BLOCK, "pair")


def grouped_matmul_prim_func(
    lead: tuple[int, ...],
    in_channels: int,
    out_channels: int,
    lanes: int,
    group: int,
    dtypes: tuple[str, str],
    name: str,
    axis: str,
):
    """``out[..., oc] = bias[oc] + sum_ic int32(data[..., ic]) * int32(w[ic, oc])``, the weights packed
    ``[IC/group, OC/lanes, lanes, group]``: the loop nest a dot-product intrinsic of ``lanes`` int32
    outputs, each a sum of ``group`` products, tensorizes (``vpmaddwd``: 8 x 2; ``vpdpbusd``: 16 or 8 x 4);
    ``dtypes``: the data's and the weights', ``name``: the block's, ``axis``: the outer reduction's.
    The accumulators start from the bias (see :func:`requantize_prim_func`)."""
    from tvm import te

    data = te.placeholder(dims(*lead, in_channels), dtypes[0], name="data")
    packed = te.placeholder(dims(in_channels // group, out_channels // lanes, lanes, group), dtypes[1], name="packed")
    bias = te.placeholder(dims(out_channels), "int32", name="bias")
    outer = te.reduce_axis(dims(0, in_channels // group), axis)
    k = te.reduce_axis(dims(0, group), "k")

    def body(*idx):
        *rest, oc = idx
        return te.sum(
            data[(*rest, outer * group + k)].astype("int32") * packed[outer, oc // lanes, oc % lanes, k].astype("int32"),
            axis=[outer, k],
        )

    out = te.compute(dims(*lead, out_channels), body, name=name)
    return start_from_bias(te.create_prim_func([data, packed, bias, out]), name)


def grouped_conv_prim_func(
    data_shape: tuple[int, ...],
    kernel_hw: tuple[int, int],
    out_shape: tuple[int, ...],
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    lanes: int,
    group: int,
    dtypes: tuple[str, str],
    name: str,
    fill: int,
):
    """A KxK NHWC convolution (groups 1) as :func:`grouped_matmul_prim_func`'s loop nest with the taps as
    two more reductions: ``out[b, y, x, oc] = sum_{ky, kx, c} pad[b, y*sy + ky*dy, x*sx + kx*dx, c] *
    w[ky, kx, c / group, oc / lanes, oc % lanes, c % group]``, where ``pad`` is the data padded with
    ``fill`` around it (``padding``: top, left, bottom, right) and to a multiple of ``group`` channels,
    so each tap's channels are whole groups of the dot-product intrinsic.

    Why: a KxK convolution with few input channels (MobileNetV2's stem: 3) vectorized over output
    channels with int16 products spent most of its time widening products (the 64x64 stem: 10 % of
    the model on one thread); this way its 27 taps go through ``vpmaddwd`` or ``vpdpbusd`` like the
    pointwise kernels.  The padding is a buffer of the kernel's own, written one element at a time:
    half of the 64x64 stem's time is that loop (its im2col patches, tried first, took longer still).
    The accumulators start from ``bias[oc]`` (see :func:`requantize_prim_func`)."""
    from tvm import te, tirx

    n, height, width, channels = data_shape
    kh, kw = kernel_hw
    top, left, bottom, right = padding
    depth = round_up(channels, group)
    data = te.placeholder(dims(*data_shape), dtypes[0], name="data")
    packed = te.placeholder(dims(kh, kw, depth // group, out_shape[3] // lanes, lanes, group), dtypes[1], name="packed")
    bias = te.placeholder(dims(out_shape[3]), "int32", name="bias")
    padded = te.compute(
        dims(n, height + top + bottom, width + left + right, depth),
        lambda b, y, x, c: tirx.if_then_else(
            tirx.all(y >= top, y < top + height, x >= left, x < left + width, c < channels),
            data[b, y - top, x - left, c],
            tirx.const(fill, dtypes[0]),
        ),
        name=PAD_BLOCK,
    )
    ry, rx = te.reduce_axis(dims(0, kh), "ry"), te.reduce_axis(dims(0, kw), "rx")
    outer = te.reduce_axis(dims(0, depth // group), "quad" if group == 4 else "pair")
    k = te.reduce_axis(dims(0, group), "k")
    sy, sx = (tirx.IntImm("int64", int(v)) for v in strides)
    dy, dx = (tirx.IntImm("int64", int(v)) for v in dilation)

    def body(b, y, x, oc):
        value = padded[b, y * sy + ry * dy, x * sx + rx * dx, outer * group + k].astype("int32")
        products = value * packed[ry, rx, outer, oc // lanes, oc % lanes, k].astype("int32")
        return te.sum(products, axis=[ry, rx, outer, k])

    out = te.compute(dims(*out_shape), body, name=name)
    return start_from_bias(te.create_prim_func([data, packed, bias, out]), name)


def start_from_bias(func, name: str):
    """``func`` (a reduction block ``name`` over a ``bias`` parameter, the third) with the block's init
    ``out[..., c] = bias[c]`` (``c`` its last spatial axis) instead of 0.  ``te.sum``'s ``init`` does not
    reach the PrimFunc ``create_prim_func`` makes, so the block is rewritten here.  The block's read
    regions stay as they were, without ``bias``: ``tensorize`` matches the update block's regions (which
    decomposing the reduction copies from them) against the intrinsic's, and nothing writes a parameter."""
    import tvm_ffi
    from tvm import s_tir, tirx

    bias = func.params[2]

    def visit(block):
        if block.name_hint != name or block.init is None:
            return block
        channel = [v.var for v in block.iter_vars if v.iter_type == tirx.IterVar.DataPar][-1]
        init = tirx.BufferStore(block.init.buffer, tirx.BufferLoad(bias, [channel]), block.init.indices)
        fields = (block.alloc_buffers, block.match_buffers, block.annotations)
        return s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, block.body, init, *fields)

    return tvm_ffi.structural_map(func, [(s_tir.SBlock, visit)])


def pack_conv_weights(weight_hwio: np.ndarray, lanes: int, group: int, dtype: str) -> np.ndarray:
    """(KH, KW, IC, OC) weights -> (KH, KW, IC'/group, OC/lanes, lanes, group) for
    :func:`grouped_conv_prim_func` (IC' = IC padded to a multiple of ``group`` with zeros)."""
    kh, kw, ic, oc = weight_hwio.shape
    depth = round_up(ic, group)
    padded = np.zeros((kh, kw, depth, oc), weight_hwio.dtype)
    padded[:, :, :ic] = weight_hwio
    return padded.astype(dtype).reshape(kh, kw, depth // group, group, oc // lanes, lanes).transpose(0, 1, 2, 4, 5, 3).copy()


def dot_product_desc(lanes: int, group: int, a_dtype: str, b_dtype: str):
    """What a dot-product intrinsic computes, for tensorize to match: ``C[i] += A[k] * B[i, k]`` over
    ``lanes`` int32 outputs and ``group`` products each (``vpmaddwd``: 8 x 2 int16; ``vpdpbusd``:
    16 or 8 x 4 uint8 x int8)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((group,), a_dtype, offset_factor=1),
        B: T.Buffer((lanes, group), b_dtype, offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, group):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


@functools.cache
def register_intrinsic() -> str:
    """Register the ``vpmaddwd`` tensor intrinsic with TVM (once per process); returns its name."""
    from tvm import s_tir
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((2,), "int16", offset_factor=1),
        B: T.Buffer((8, 2), "int16", offset_factor=1),
        C: T.Buffer((8,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            # one expression, no temporaries: TVM lowers a temporary inside a parallel loop's body to a
            # TVMBackendAllocWorkspace call per use (two per pixel here), which took most of the time
            C[T.ramp(T.int32(0), 1, 8)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), 8), dtype="int16x16"),
                B.vload([0, 0], dtype="int16x16"),
                dtype="int32x8",
            )

    s_tir.TensorIntrin.register(INTRIN, dot_product_desc(LANES, PAIR, "int16", "int16"), impl)
    return INTRIN


def schedule_block(
    sch,
    info,
    parallel: bool,
    output_blocks: int | None = None,
    pixels: int | None = None,
    attach=None,
    lanes: int = LANES,
    intrin=register_intrinsic,
) -> None:
    """Output channels split by ``lanes`` (8) and tensorized (``intrin()``'s name) with the inner
    reduction (an input pair here; a quad for :mod:`qbench.tvm.vnni_int8_kernels`), ``output_blocks`` blocks of
    8 per input pair (by default the most of :data:`OUTPUT_BLOCKS` that divides the channel count;
    a count that does not divide it falls back to that); the pixel loops outermost.  With ``pixels``
    (dividing the innermost pixel loop), that many neighbouring pixels share each input pair's
    weight loads: ``pixels x output_blocks`` accumulators.  ``attach``, if given, is called with the
    loop over output-channel groups (outside the reduction) to compute the block's consumers under it.
    ``info`` is DLight's SBlockInfo: its iters, in block-iter order, name each iter's loop."""
    block = info.block_rv
    *lead, oc = [it.loop_rv for it in info.iters if it.kind == "S"]
    *reductions, k = [it.loop_rv for it in info.iters if it.kind == "R"]  # (taps,) pairs or quads, the group
    oc_outer, oc_inner = sch.split(oc, [None, lanes])
    blocks = int(sch.get(oc_outer).extent)
    unrolled = (
        output_blocks if output_blocks and blocks % output_blocks == 0 else next(b for b in OUTPUT_BLOCKS if blocks % b == 0)
    )
    oc_outer, oc_unrolled = sch.split(oc_outer, [None, unrolled])
    neighbours = []
    if pixels and pixels > 1 and lead and int(sch.get(lead[-1]).extent) % pixels == 0:
        pixel_outer, pixel_inner = sch.split(lead[-1], [None, pixels])
        lead, neighbours = [*lead[:-1], pixel_outer], [pixel_inner]
    sch.reorder(*lead, oc_outer, *reductions, *neighbours, oc_unrolled, oc_inner, k)
    if parallel and lead:
        sch.parallel(sch.fuse(*lead))
    if attach:  # before tensorizing: TVM cannot compute a consumer at a tensorized block's loop
        attach(oc_outer)
    sch.decompose_reduction(block, reductions[0])
    sch.tensorize(oc_inner, intrin())
    sch.unroll(oc_unrolled)
    for loop in neighbours:
        sch.unroll(loop)


def requantize_shifts(shift: np.ndarray) -> tuple[bool, bool]:
    """What a requantize kernel for these per-channel shifts must do: (shift some channel left,
    shift every channel right).  Scales under 1 (almost every op) shift right only."""
    shift = np.asarray(shift)
    return bool(np.any(shift > 0)), bool(np.all(shift < 0))


def requantize_params(mult, shift, zero_point: int, single_rounding: bool = False) -> list[np.ndarray]:
    """The parameters :func:`requantize_prim_func` takes after the accumulator: int32 arrays, and for
    ``single_rounding`` the int64 ``nudge`` per channel (``2**(30 - shift)``)."""
    shift = np.asarray(shift, np.int64)
    right = np.maximum(-shift, 0)
    params = [
        np.asarray(mult, np.int64).astype(np.int32),
        np.maximum(shift, 0).astype(np.int32),
        right.astype(np.int32),
        ((np.int64(1) << right) >> 1).astype(np.int32),
    ]
    if single_rounding:
        params.append((np.int64(1) << (30 - shift)).astype(np.int64))
    return [*params, np.array([zero_point], np.int32)]


def requantize_prim_func(
    shape: tuple[int, ...], out_dtype: str, single_rounding: bool, shifts_left: bool = True, always_right: bool = False
):
    """``out = clamp(MultiplyByQuantizedMultiplier(acc, M[c], shift[c]) + zp)`` for an int32
    accumulator that already holds the bias, per output channel ``c`` (the last axis).

    Made for the shifts it will be given (:func:`requantize_shifts`): without ``shifts_left`` the left
    shift is left out; with ``always_right`` the rounding's tie correction is the sign bit
    (``high >> 31``) instead of a compare and select.  In a requantize epilogue, most of a 1x1 or
    depthwise kernel's time (profiled on the 64x64 int8 model), each is an instruction or two fewer
    per vector.

    A kernel of its own (not Relax ops) so that the 64-bit product is written as
    ``int64(int32) * int64(int32)``: LLVM then emits ``vpmuldq``, where a product of an int64
    tensor and a folded int64 constant is emulated with three multiplies.  The bias is not a
    parameter: the dot-product kernels start their accumulators from it (an int32 add, as in TFLite),
    so the first rounding's half, ``2**30``, is the same for every channel, a constant.  With a per-channel
    int64 ``bias * M + 2**30`` instead, every 16 lanes loaded two zmm registers of it and split them
    into even and odd channels for :mod:`qbench.tvm.paired_products` (two ``vpermt2q``): without
    them tvm-host-int8 took 0.97x (224x224 and 64x64, one thread, 30 rounds interleaved in one process).
    Everything else stays in int32.  Parameters (:func:`requantize_params`): acc, multiplier,
    left shift, right shift, half of ``1 << right`` (given, not computed per vector), zero point.
    With ``single_rounding`` the product is rounded once (LiteRT's FULLY_CONNECTED):
    ``(acc * M + nudge) >> (31 - shift)``, ``nudge = 2**(30 - shift)`` per channel, a parameter
    before the zero point."""
    from tvm import te, tirx

    channels = shape[-1]
    acc = te.placeholder(dims(*shape), "int32", name="acc")
    mult, left, right, half = (te.placeholder(dims(channels), "int32", name=n) for n in ("mult", "left", "right", "half"))
    nudge = te.placeholder(dims(channels), "int64", name="nudge") if single_rounding else None
    zero_point = te.placeholder(dims(1), "int32", name="zero_point")
    info = np.iinfo(out_dtype)

    def i64(v):
        return tirx.IntImm("int64", v)

    def body(*idx):
        c = idx[-1]
        value = acc[idx] << left[c] if shifts_left and not single_rounding else acc[idx]  # the left shift first
        product = value.astype("int64") * mult[c].astype("int64")  # two sign-extended int32: vpmuldq
        if single_rounding:  # shift = left - right; one shift right by 31 - shift
            total = (i64(31) + right[c].astype("int64")) - left[c].astype("int64")
            rounded = ((product + nudge[c]) >> total).astype("int32")
        else:
            high = ((product + i64(1 << 30)) >> i64(31)).astype("int32")
            r = right[c]
            if always_right:  # -1 where high < 0: the same as subtracting the tie correction
                rounded = (high + half[c] + (high >> tirx.IntImm("int32", 31))) >> r
            else:
                ties_down = tirx.Select(tirx.all(high < 0, r > 0), tirx.IntImm("int32", 1), tirx.IntImm("int32", 0))
                rounded = (high + half[c] - ties_down) >> r
        shifted = rounded + zero_point[0]
        return te.max(te.min(shifted, tirx.IntImm("int32", int(info.max))), tirx.IntImm("int32", int(info.min))).astype(out_dtype)

    out = te.compute(dims(*shape), body, name="requantize")
    nudges = [nudge] if single_rounding else []
    return te.create_prim_func([acc, mult, left, right, half, *nudges, zero_point, out])


LOOKUP_BLOCK = "lookup"
_VPERMI2B = "llvm.x86.avx512.vpermi2var.qi.512"  # AVX-512 VBMI: 64 bytes from a 128-byte table


def lookup_table_dtype(byte_permutes: bool, out_dtype: str) -> str:
    """The dtype :func:`lookup_prim_func` takes its table in: bytes for ``vpermi2b``, else int32."""
    return out_dtype if byte_permutes else "int32"


def lookup_prim_func(shape: tuple[int, ...], in_dtype: str, out_dtype: str, byte_permutes: bool):
    """``out = table[x - min(in_dtype)]`` for an 8-bit ``x``: an elementwise op of one 8-bit tensor
    and constants, tabulated (:func:`qbench.tvm.int8_lowering._lookup_table`).

    With ``byte_permutes`` (AVX-512 VBMI), 64 elements at a time: two ``vpermi2b`` look the low
    7 bits up in each half of the 256-byte table, the top bit picks the half; already scheduled.
    Without, a loop the default schedule vectorizes, over an int32 table (LLVM gathers it with
    ``vpgatherdd``; a byte table took a scalar extract and insert per element).  On the 64x64
    model's 12,288 input elements, one thread: about 10 us gathered (Zen 4)."""
    from tvm import te, tirx

    low = int(np.iinfo(in_dtype).min)
    if not byte_permutes:
        x = te.placeholder(dims(*shape), in_dtype, name="x")
        table = te.placeholder(dims(256), "int32", name="table")
        out = te.compute(dims(*shape), lambda *i: table[x[i].astype("int32") - low].astype(out_dtype), name=LOOKUP_BLOCK)
        return te.create_prim_func([x, table, out])

    from tvm.script import tirx as T

    n = int(np.prod(shape))
    blocks, tail = divmod(n, 64)
    extents = list(dims(*shape))

    # the table index x - low has its top bit where an int8 x is >= 0 (a uint8 x: where it is >= 128,
    # negative as int8): which half of the table a lane's sign picks
    negative, positive = (0, 128) if low else (128, 0)
    vbytes = f"{out_dtype}x64"

    def half(table, index, start: int):
        """``vpermi2b``: 64 bytes of ``table[start : start + 128]`` at ``index``'s low 7 bits."""
        rows = [tirx.reinterpret("int8x64", table.vload([start + offset], vbytes)) for offset in (0, 64)]
        return tirx.call_llvm_pure_intrin("int8x64", _VPERMI2B, rows[0], index, rows[1])

    @T.prim_func
    def lookup(x_: T.handle, table: T.Buffer((T.int64(256),), out_dtype), out_: T.handle):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        x = T.match_buffer(x_, extents, in_dtype)
        out = T.match_buffer(out_, extents, out_dtype)
        flat_x = T.decl_buffer((n,), in_dtype, data=x.data)
        flat_out = T.decl_buffer((n,), out_dtype, data=out.data)
        for i in range(blocks):
            flat_out[T.ramp(i * 64, 1, 64)] = T.reinterpret(
                T.Select(
                    T.reinterpret(flat_x.vload([i * 64], f"{in_dtype}x64"), dtype="int8x64") < T.broadcast(T.int8(0), 64),
                    half(table, T.reinterpret(flat_x.vload([i * 64], f"{in_dtype}x64"), dtype="int8x64"), negative),
                    half(table, T.reinterpret(flat_x.vload([i * 64], f"{in_dtype}x64"), dtype="int8x64"), positive),
                ),
                dtype=vbytes,
            )
        for j in range(tail):
            flat_out[blocks * 64 + j] = table[T.Cast("int32", flat_x[blocks * 64 + j]) - low]

    return lookup


SPATIAL_BLOCK = "conv_int16_products"


def spatial_conv_prim_func(
    data_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    strides: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    depthwise: bool,
):
    """A KxK NHWC convolution (regular, HWIO weights, or depthwise, HWC1 weights) whose products
    are int16 x int16 -> int16, widened to int32 only to accumulate.

    Exact, because ``|x - zx| <= 255`` and int8 weights are at most 128 in magnitude, so every
    product fits in int16 (at most 32,640); LLVM vectorizes the products to ``vpmullw`` (16 lanes)
    instead of ``vpmulld`` (8 lanes, slower).  ``padding`` is (top, left, bottom, right), filled
    with 0 (the input zero point after subtracting it).  The accumulators start from ``bias[c]``
    (see :func:`requantize_prim_func`)."""
    from tvm import te, tirx

    n, height, width, channels = data_shape
    kh, kw = weight_shape[0], weight_shape[1]
    top, left, bottom, right = padding
    data = te.placeholder(dims(*data_shape), "int16", name="data")
    weight = te.placeholder(dims(*weight_shape), "int16", name="weight")
    bias = te.placeholder(dims(out_shape[3]), "int32", name="bias")
    padded = te.compute(
        dims(n, height + top + bottom, width + left + right, channels),
        lambda b, y, x, c: tirx.if_then_else(
            tirx.all(y >= top, y < top + height, x >= left, x < left + width),
            data[b, y - top, x - left, c],
            tirx.IntImm("int16", 0),
        ),
        name="pad",
    )
    ry = te.reduce_axis(dims(0, kh), "ry")
    rx = te.reduce_axis(dims(0, kw), "rx")
    sy, sx = (tirx.IntImm("int64", int(s)) for s in strides)
    dy, dx = (tirx.IntImm("int64", int(d)) for d in dilation)

    if depthwise:

        def body(b, y, x, c):
            product = padded[b, y * sy + ry * dy, x * sx + rx * dx, c] * weight[ry, rx, c, 0]
            return te.sum(product.astype("int32"), axis=[ry, rx])

    else:
        rc = te.reduce_axis(dims(0, channels), "rc")

        def body(b, y, x, c):
            product = padded[b, y * sy + ry * dy, x * sx + rx * dx, rc] * weight[ry, rx, rc, c]
            return te.sum(product.astype("int32"), axis=[ry, rx, rc])

    out = te.compute(dims(*out_shape), body, name=SPATIAL_BLOCK)
    return start_from_bias(te.create_prim_func([data, weight, bias, out]), SPATIAL_BLOCK)
