"""VNNI int8 kernels for TVM: pointwise convolutions and dense layers through ``vpdpbusd``.

Why: on a CPU with AVX-512 VNNI (or AVX-VNNI), LiteRT's XNNPACK multiplies
int8 with ``vpdpbusd``: 64 uint8 x int8 products summed in fours into 16
int32 lanes, one instruction.  ``tvm-avx2-int8`` is held to AVX2's
``vpmaddwd`` (16 int16 products); ``tvm-host-int8`` uses these kernels so
that TVM and LiteRT are compared on the same instructions.

Exact, like TFLite's reference kernels: ``vpdpbusd`` (not ``vpdpbusds``)
does not saturate, and its unsigned operand is the int8 activation offset
by 128 (``u = x + 128``, 0..255), so

    sum (x - zx) * w  =  sum u * w  -  (128 + zx) * sum w

per output channel; the last term is a constant of the weights, folded into
the bias (:func:`offset_correction`).  At most 255 x 128 x IC: an int32
holds it for any IC under 65,000.

The layout: the data keeps NHWC (input channels contiguous, read in fours);
the weights are packed ``[IC/4, OC/L, L, 4]`` int8, so one load holds the L
output channels' four input-channel weights (L = 16 for 512-bit, 8 for
256-bit registers).  1x1 convolutions (stride 1, no padding) and dense
layers qualify when IC is a multiple of 4 and OC of L.
"""

from __future__ import annotations

import functools

import numpy as np

from qbench.tvm.avx2_int8_kernels import dot_product_desc, grouped_matmul_prim_func

BLOCK = "matmul_vpdpbusd"
QUAD = 4  # input channels summed into one int32 lane per vpdpbusd
OFFSET = 128  # uint8 = int8 + OFFSET
# LLVM's intrinsic for each register width; AVX-VNNI's VEX-encoded 256-bit form is the same intrinsic
_LLVM = {16: "llvm.x86.avx512.vpdpbusd.512", 8: "llvm.x86.avx512.vpdpbusd.256"}


def lanes_for(in_channels: int, out_channels: int, widths: tuple[int, ...]) -> int | None:
    """The widest of ``widths`` (int32 lanes the CPU's VNNI offers) this op's channels fit, or None."""
    if in_channels % QUAD:
        return None
    return next((w for w in sorted(widths, reverse=True) if out_channels % w == 0), None)


def pack_weights(weight_ic_oc: np.ndarray, lanes: int) -> np.ndarray:
    """(IC, OC) int8 weights -> (IC/4, OC/lanes, lanes, 4) int8, the layout the intrinsic loads."""
    ic, oc = weight_ic_oc.shape
    return weight_ic_oc.astype(np.int8).reshape(ic // QUAD, QUAD, oc // lanes, lanes).transpose(0, 2, 3, 1).copy()


def offset_correction(weight_ic_oc: np.ndarray, zero_point: int) -> np.ndarray:
    """What to add to each output channel's accumulator of offset data: ``-(128 + zx) * sum_ic w``."""
    return (-(OFFSET + int(zero_point)) * weight_ic_oc.astype(np.int64).sum(axis=0)).astype(np.int32)


def matmul_prim_func(lead: tuple[int, ...], in_channels: int, out_channels: int, lanes: int):
    """``out[..., oc] = sum_ic int32(u[..., ic]) * int32(w[ic, oc])``, uint8 data, packed int8 weights."""
    return grouped_matmul_prim_func(lead, in_channels, out_channels, lanes, QUAD, ("uint8", "int8"), BLOCK, "quad")


@functools.cache
def register_intrinsic(lanes: int) -> str:
    """Register the ``vpdpbusd`` tensor intrinsic for ``lanes`` int32 outputs (16: 512-bit, 8: 256-bit)
    with TVM, once per process; returns its name."""
    from tvm import s_tir
    from tvm.script import tirx as T

    name = f"qbench_vpdpbusd_{lanes}x4"
    bytes_ = lanes * QUAD

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # one expression, no temporaries (see the vpmaddwd intrinsic): the four uint8 inputs as one
            # int32 broadcast to every lane, then as bytes (the LLVM 20 intrinsic takes <N x i8>)
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(_LLVM[lanes]),
                C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes), dtype=f"uint8x{bytes_}"),
                B.vload([0, 0], dtype=f"int8x{bytes_}"),
                dtype=f"int32x{lanes}",
            )

    s_tir.TensorIntrin.register(name, dot_product_desc(lanes, QUAD, "uint8", "int8"), impl)
    return name


def block_lanes(sch, block_rv) -> int:
    """The lanes a ``matmul_vpdpbusd`` block was made for (its packed weights' second axis from the
    end: the int8 buffer it reads, four axes for a matmul, six for a KxK convolution)."""
    buffers = [r.source if hasattr(r, "source") else r.buffer for r in sch.get(block_rv).reads]
    packed = next(b for b in buffers if b.dtype == "int8" and len(b.shape) >= 4)
    return int(packed.shape[-2])


DEFAULT_PIXELS = 2  # neighbouring pixels sharing each weight load, unless a knob says otherwise


def schedule_block(sch, info, parallel: bool, output_blocks: int | None = None, pixels: int | None = None, attach=None) -> None:
    """As :func:`qbench.tvm.avx2_int8_kernels.schedule_block`, with this block's lanes and intrinsic, and
    pairs of pixels by default: ``qbench tune --target host`` chose ``pixels=2`` for 15 of the 224x224
    model's 20 kept kernels (each 12-38 % faster inside the model) and as the best single choice for
    the whole 64x64 model (0.111 against 0.121 ms, one run each, this VNNI VM)."""
    from qbench.tvm import avx2_int8_kernels as avx2

    pixels = DEFAULT_PIXELS if pixels is None else pixels
    lanes = block_lanes(sch, info.block_rv)
    avx2.schedule_block(sch, info, parallel, output_blocks, pixels, attach, lanes=lanes, intrin=lambda: register_intrinsic(lanes))
