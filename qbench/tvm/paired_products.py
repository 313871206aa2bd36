"""A TIR rewrite after vectorization: each requantize's 64-bit products as even and odd ``vpmuldq``.

Why: the requantize epilogue (:func:`qbench.tvm.avx2_int8_kernels.requantize_prim_func`) is most of
a 1x1 or depthwise kernel's time, and in it the product ``int64(acc) * int64(M) + nudge``, shifted
right by 31 and truncated to int32.  Vectorized over 16 int32 lanes, that is a 16-lane int64 vector
LLVM splits in two: it extracts the upper half, widens both halves (``vpmovzxdq``), multiplies,
and narrows both results back (``vpmovqd``, ``vinserti64x4``): 12 instructions per 16 lanes in the
64x64 model's largest 1x1 kernel (``perf annotate``).  ``vpmuldq`` reads only the low int32 of each
int64 lane, so the accumulator register holds its products already paired: the even lanes as they
are, the odd lanes after one shift right by 32; the even results end in the low int32 of their
lanes after the shift by 31, the odd results in the high int32 after a shift left by 1, and one
blend puts them together: 8 instructions, no widening.  TE cannot say "the odd lanes of this
register"; after ``VectorizeLoop`` the product is one vector expression, and this pass rewrites it
with ``reinterpret`` and ``Shuffle``, which LLVM lowers to exactly that.

Bit for bit the same result (the same int64 products, the same low 32 bits kept): the per-op tests
compile every kernel through this pipeline against LiteRT's reference kernels, and
``tests/test_tvm_int8_lowering.py`` checks the requantize kernel on 16 lanes (rewritten) and 8.
Measured (this Zen 4 VM, one thread, both builds interleaved in one process, 30 rounds): the
64x64 int8 model 0.91x (tvm-host-int8), 224x224 0.93x.  Not on AVX2's 8 lanes (:data:`MIN_LANES`).
"""

from __future__ import annotations

PIPELINE = "qbench_s_tir"  # the name the TIR pipeline is registered under (tvm.compile takes a name)
# Rewritten from this many int32 lanes (a zmm register): on AVX2's 8 lanes the even/odd halves are
# ymm shuffles LLVM spends more on than it saves (tvm-avx2-int8 at 224x224 1.10x one thread, 1.07x
# two, where 64x64 took 0.96x), so AVX2 keeps LLVM's own lowering.
MIN_LANES = 16
_SHIFT = 31  # the requantize's shift after the product: the odd results then sit in the high int32


def rewrite(mod):
    """``mod`` (lowered, vectorized TIR) with every ``int32xN(int64xN(a) * int64xN(m) + n >> s)`` of
    int32 vectors ``a``, ``m`` (N at least :data:`MIN_LANES`) as two ``vpmuldq`` of N/2 lanes each;
    everything else unchanged."""
    import tvm_ffi
    from tvm.tirx import Cast

    return tvm_ffi.structural_map(mod, [(Cast, _paired)])


def register() -> str:
    """Register the TIR pipeline (:func:`qbench.tvm.amx_int8_kernels.configure_tiles`, TVM's default
    ``s_tir`` pipeline, then :func:`rewrite`) under :data:`PIPELINE`, for
    ``tvm.compile(..., tir_pipeline=PIPELINE)``; returns the name."""
    import tvm
    from tvm.tirx import compilation_pipeline

    from qbench.tvm.amx_int8_kernels import configure_tiles

    def make():
        lower, finalize_host, finalize_device = compilation_pipeline.get_tir_pipeline("s_tir")

        @tvm.transform.module_pass(opt_level=0, name="qbench.PairedProducts")
        def pipeline(mod, _ctx):
            return rewrite(lower(configure_tiles(mod)))

        return pipeline, finalize_host, finalize_device

    compilation_pipeline.PIPELINE_MAP.setdefault(PIPELINE, make)
    return PIPELINE


def _halves(vector, lanes: int):
    """The even and the odd lanes of an int64 vector expression (a broadcast stays one)."""
    from tvm.tirx import Broadcast, IntImm, Shuffle

    if isinstance(vector, Broadcast):
        return Broadcast(vector.value, lanes // 2), Broadcast(vector.value, lanes // 2)
    return tuple(Shuffle([vector], [IntImm("int32", i) for i in range(first, lanes, 2)]) for first in (0, 1))


def _paired(cast):
    from tvm import tirx
    from tvm.tirx import Add, Broadcast, Cast, IntImm, Mul, RShift, Shuffle

    ty = str(cast.ty)
    shifted = cast.value
    if not ty.startswith("int32x") or not isinstance(shifted, RShift) or not isinstance(shifted.a, Add):
        return cast
    lanes = cast.ty.dtype.lanes
    if lanes < MIN_LANES:
        return cast
    total = shifted.a
    product, nudge = (total.a, total.b) if isinstance(total.a, Mul) else (total.b, total.a)
    if not isinstance(product, Mul) or str(product.ty) != f"int64x{lanes}" or lanes % 2:
        return cast
    factors = (product.a, product.b)
    if not all(isinstance(f, Cast) and str(f.value.ty) == ty for f in factors):
        return cast
    half = f"int64x{lanes // 2}"
    a, m = (tirx.reinterpret(half, f.value) for f in factors)

    def wide(value: int):
        return Broadcast(IntImm("int64", value), lanes // 2)

    def low(x):  # the low int32 of each int64 lane, sign-extended
        return RShift(x << wide(32), wide(32))

    nudge_even, nudge_odd = _halves(nudge, lanes)
    shift_even, shift_odd = _halves(shifted.b, lanes)
    even = tirx.reinterpret(ty, RShift(low(a) * low(m) + nudge_even, shift_even))
    odd_product = RShift(a, wide(32)) * RShift(m, wide(32)) + nudge_odd
    pairs = range(0, lanes, 2)
    if isinstance(shift_odd, Broadcast) and isinstance(shift_odd.value, IntImm) and int(shift_odd.value.value) == _SHIFT:
        # the odd results' bits 31..62 into the high int32 of their lanes: one blend joins the halves
        odd = tirx.reinterpret(ty, odd_product << wide(32 - _SHIFT))
        picks = [i for p in pairs for i in (p, lanes + p + 1)]
    else:  # a shift per lane (one rounding): both results in the low int32, a two-register permute
        odd = tirx.reinterpret(ty, RShift(odd_product, shift_odd))
        picks = [i for p in pairs for i in (p, lanes + p)]
    return Shuffle([even, odd], [IntImm("int32", i) for i in picks])
