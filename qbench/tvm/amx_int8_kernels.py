"""AMX int8 kernels for TVM: pointwise convolutions through ``tdpbusd`` tiles.

Why: on a CPU with AMX (Intel Sapphire Rapids and later), LiteRT's XNNPACK
runs its int8 GEMMs on AMX tiles (``..._16x64c4__avx512amx``, seen with
``perf``): one ``tdpbusd`` multiplies a tile of up to 16 rows x 64 uint8
by one of 16 x 64 int8 into 16 x 16 int32, 16,384 multiply-adds.  With
``vpdpbusd`` alone, ``tvm-host-int8`` ran the 224x224 model's 1x1
convolutions about 1.4x slower than XNNPACK there.  These kernels put the
same tiles under the same integer lowering, so the two are on equal terms.

Exact, as :mod:`qbench.tvm.vnni_int8_kernels` (the same uint8 offset data,
the same packed weights, the offset's term in the bias): ``tdpbusd`` sums
uint8 x int8 products into int32 without saturating.

The tile shapes: A is ``mr`` pixels of one image row (``mr`` the largest
divisor of the row's width up to :data:`MAX_ROWS`) by ``kc`` input
channels (the largest multiple of 4 dividing IC up to 64), B the packed
weights' ``kc/4`` rows of 16 (or 8) output channels x 4, C ``mr`` x 16 (8) int32,
held in its tile across all of IC.  C then goes through a buffer of
``mr x 16`` int32 that the requantize epilogue reads while it is in L1;
under 1 KiB so TVM keeps it on the stack (``MAX_ROWS`` 15, not 16).  The
tile configuration (``ldtilecfg``) is per thread: :func:`configure_tiles`
(a TIR pass) loads it in each iteration of a parallel loop, or once before
a serial kernel's loops, and releases the tiles after.  Linux lets a
process use the tiles only after asking (``arch_prctl``,
:func:`request_permission`).

Measured on an Intel Xeon VM with AMX (2 vCPUs, 2026-12-07): the 224x224
model's ``tvm-host-int8`` 0.86x the same build without tiles with C tiles of
16 columns (25 kernels), **0.815x** with 8-column tiles for the output
channel counts 16 does not divide (27 kernels; 40 interleaved rounds in one
process each, outputs identical).
"""

from __future__ import annotations

import ctypes
import functools

BLOCK = "matmul_tdpbusd"
LANES = (16, 8)  # int32 columns of a C tile: 64 bytes, or 32 where the output channels are 8 x an odd number
QUAD = 4
MAX_ROWS = 15  # a C tile of 16 rows is 1 KiB: TVM would allocate it from the workspace per tile
MAX_DEPTH = 64  # bytes of a tile row
MIN_DEPTH = 64  # from fewer input channels the 224x224 model was slower: tiles from 32 0.90x, from 64 0.86x
# a model gets tiles only if they would do this many multiply-adds: tile code slows the rest of the
# model (about 10 % per vpdpbusd kernel at 64x64 under perf, likely the core's AMX frequency licence);
# measured: 1.2 M (the 64x64 model, 1.06-1.12x with tiles) and 188 M (224x224, 0.86x); between, a guess
MIN_MODEL_MACS = 20_000_000
PARALLEL_SCALE = 16  # a kernel goes parallel from this many times the vector kernels' threshold
CONFIG = "qbench_amx_tiles"  # loop annotation: (rows, depth, lanes) of the kernel's tiles
FEATURES = ("+amx-tile", "+amx-int8")  # LLVM's, added to the target
_TILE_C, _TILE_A, _TILE_B = 0, 1, 2

_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86_64


def has_amx(flags: frozenset) -> bool:
    """Whether a CPU with these /proc/cpuinfo ``flags`` has int8 AMX tiles."""
    return {"amx_tile", "amx_int8"} <= flags


@functools.cache
def request_permission() -> bool:
    """Ask Linux for the AMX tile state (once per process; without it the first tile instruction
    is SIGILL).  True if granted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def tile_rows(width: int) -> int | None:
    """The pixels of an A tile: the largest divisor of the image row's ``width`` up to MAX_ROWS."""
    return next((r for r in range(min(width, MAX_ROWS), 0, -1) if width % r == 0), None)


def tile_depth(in_channels: int) -> int | None:
    """The input channels of an A tile: the largest multiple of 4 dividing ``in_channels`` up to 64."""
    return next((d for d in range(MAX_DEPTH, 0, -QUAD) if in_channels % d == 0), None)


def qualifies(lead: tuple[int, ...], in_channels: int, out_channels: int) -> bool:
    """A 1x1 convolution (NHWC ``lead`` + channels) the tiles run, and faster than ``vpdpbusd``: IC a
    multiple of 4 and at least :data:`MIN_DEPTH`, OC a multiple of 8, rows of more than one pixel."""
    return len(lead) == 3 and in_channels % QUAD == 0 and in_channels >= MIN_DEPTH and out_channels % 8 == 0 and lead[2] > 1


def matmul_prim_func(lead: tuple[int, ...], in_channels: int, out_channels: int, lanes: int):
    """:func:`qbench.tvm.vnni_int8_kernels.matmul_prim_func`'s computation (uint8 data, the same packed
    weights), in a block this module schedules."""
    from qbench.tvm.avx2_int8_kernels import grouped_matmul_prim_func

    return grouped_matmul_prim_func(lead, in_channels, out_channels, lanes, QUAD, ("uint8", "int8"), BLOCK, "quad")


def _call(name: str, *args):
    from tvm import tirx

    return tirx.Evaluate(tirx.call_llvm_intrin("void", f"llvm.x86.{name}", *args))


@functools.cache
def register_intrinsic(rows: int, depth: int, steps: int, lanes: int) -> str:
    """Register the ``tdpbusd`` tensor intrinsic for ``rows`` pixels x ``lanes`` output channels over
    ``steps`` x ``depth`` input channels (once per process): C loaded once, ``steps`` A and B tiles
    multiplied into it, C stored once."""
    from tvm import s_tir
    from tvm.script import tirx as T

    quads = depth // QUAD
    channels = depth * steps
    name = f"qbench_tdpbusd_{rows}x{depth}x{steps}x{lanes}"
    load, store = "llvm.x86.tileloadd64", "llvm.x86.tilestored64"

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((rows, channels), "uint8", offset_factor=1),
        B: T.Buffer((quads * steps, 1, lanes, QUAD), "int8", offset_factor=1),
        C: T.Buffer((rows, lanes), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:rows, 0:lanes], A[0:rows, 0:channels], B[0 : quads * steps, 0, 0:lanes, 0:QUAD])
            T.writes(C[0:rows, 0:lanes])
            for m, n, q, k in T.grid(rows, lanes, quads * steps, QUAD):
                with T.sblock("update"):
                    vm, vn, vq, vk = T.axis.remap("SSRR", [m, n, q, k])
                    C[vm, vn] = C[vm, vn] + T.cast(A[vm, vq * QUAD + vk], "int32") * T.cast(B[vq, 0, vn, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sb0 = T.int32()
        sb1 = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (rows, channels), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (quads * steps, 1, lanes, QUAD), "int8", offset_factor=1, strides=[sb0, sb1, QUAD, 1])
        C = T.match_buffer(c, (rows, lanes), "int32", offset_factor=1, strides=[sc, 1])
        with T.sblock("root"):
            T.reads(C[0:rows, 0:lanes], A[0:rows, 0:channels], B[0 : quads * steps, 0, 0:lanes, 0:QUAD])
            T.writes(C[0:rows, 0:lanes])
            # C's rows are sc int32 apart, A's sa bytes, B's (its quads) sb0 bytes
            T.evaluate(T.call_llvm_intrin("void", load, T.int8(_TILE_C), C.access_ptr("r"), T.Cast("int64", sc * 4)))
            for step in range(steps):
                a_tile = A.access_ptr("r", offset=step * depth)
                b_tile = B.access_ptr("r", offset=step * quads * sb0)
                T.evaluate(T.call_llvm_intrin("void", load, T.int8(_TILE_A), a_tile, T.Cast("int64", sa)))
                T.evaluate(T.call_llvm_intrin("void", load, T.int8(_TILE_B), b_tile, T.Cast("int64", sb0)))
                T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tdpbusd", T.int8(_TILE_C), T.int8(_TILE_A), T.int8(_TILE_B)))
            T.evaluate(T.call_llvm_intrin("void", store, T.int8(_TILE_C), C.access_ptr("w"), T.Cast("int64", sc * 4)))

    s_tir.TensorIntrin.register(name, desc, impl)
    return name


def schedule_block(sch, info, parallel: bool, output_blocks=None, pixels=None, attach=None) -> None:
    """Pixels of a row split by the tile's rows, output channels by its columns (16, or 8); each output tile,
    over all the input channels, tensorized with ``tdpbusd`` (C stays in its tile register across the
    depth steps); ``attach`` called with the loop over output-channel tiles (the epilogue reads each
    C tile there).  ``output_blocks`` and ``pixels`` are the other kernels' knobs: not for tiles."""
    from qbench.tvm.vnni_int8_kernels import block_lanes  # the same packed weights: their lanes are C's columns

    del output_blocks, pixels
    block = info.block_rv
    *lead, oc = [it.loop_rv for it in info.iters if it.kind == "S"]
    quad, k = [it.loop_rv for it in info.iters if it.kind == "R"]
    lanes = block_lanes(sch, block)
    rows = tile_rows(int(sch.get(lead[-1]).extent))
    channels = int(sch.get(quad).extent) * QUAD
    depth = tile_depth(channels)
    x_outer, x_inner = sch.split(lead[-1], [None, rows])
    oc_outer, oc_inner = sch.split(oc, [None, lanes])
    outer = [*lead[:-1], x_outer]
    sch.reorder(*outer, oc_outer, x_inner, oc_inner, quad, k)
    top = sch.fuse(*outer)
    if parallel:
        sch.parallel(top)
    sch.annotate(top, CONFIG, [rows, depth, lanes])
    if attach:
        attach(oc_outer)
    init = sch.decompose_reduction(block, x_inner)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(x_inner, register_intrinsic(rows, depth, channels // depth, lanes))


def tile_config(rows: int, depth: int, lanes: int = 16) -> list[int]:
    """The 64-byte ``ldtilecfg`` operand: palette 1, C and A ``rows`` x (4 ``lanes``, ``depth``)
    bytes, B ``depth / 4`` rows x 4 ``lanes`` bytes."""
    config = [0] * 64
    config[0] = 1
    for tile, (r, colsb) in {_TILE_C: (rows, 4 * lanes), _TILE_A: (rows, depth), _TILE_B: (depth // QUAD, 4 * lanes)}.items():
        config[16 + 2 * tile] = colsb & 0xFF
        config[17 + 2 * tile] = colsb >> 8
        config[48 + tile] = r
    return config


def configure_tiles(mod):
    """``mod`` (scheduled TIR) with the tile configuration loaded before each loop annotated
    :data:`CONFIG`, or first in its body when it is parallel (each task runs on a thread of its own,
    and the tile configuration is per thread), and the tiles released after."""
    import tvm_ffi
    from tvm import tirx

    def configured(rows: int, depth: int, lanes: int, body):
        config = tirx.decl_buffer((64,), "uint8", name="amx_config")
        stores = [tirx.BufferStore(config, tirx.const(v, "uint8"), [i]) for i, v in enumerate(tile_config(rows, depth, lanes))]
        load = _call("ldtilecfg", tirx.address_of(tirx.BufferLoad(config, [0])))
        return tirx.SeqStmt([tirx.AllocBuffer(config), *stores, load, body, _call("tilerelease")])

    def visit(loop):
        if CONFIG not in loop.annotations:
            return loop
        rows, depth, lanes = (int(v) for v in loop.annotations[CONFIG])
        annotations = {k: v for k, v in loop.annotations.items() if k != CONFIG}
        if loop.kind == tirx.ForKind.PARALLEL:
            body = configured(rows, depth, lanes, loop.body)
            return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, annotations)
        plain = tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, loop.body, loop.thread_binding, annotations)
        return configured(rows, depth, lanes, plain)

    return tvm_ffi.structural_map(mod, [(tirx.For, visit)])
