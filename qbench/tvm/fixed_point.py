"""TFLite's fixed-point requantization, in numpy (the parameters) and as Relax ops (ADD's input rescales).

Why a module of its own: these are the integer formulas every lowered op
shares (``QuantizeMultiplier``, ``MultiplyByQuantizedMultiplier``), checked
against a literal transcription of TFLite's definition by the tests, while
:mod:`qbench.tvm.int8_lowering` is about which graph patterns get them.
"""

from __future__ import annotations

import math

import numpy as np

ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD: inputs are shifted left by 20 bits before rescaling


# ----------------------------------------------------------------- TFLite's arithmetic, in numpy
def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``QuantizeMultiplier``: ``real ~= multiplier * 2**(shift - 31)``, multiplier in [2**30, 2**31)."""
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    mult = np.zeros(real.shape, np.int64)
    shift = np.zeros(real.shape, np.int64)
    for i, r in enumerate(real.flat):
        if r == 0.0:
            continue
        q, e = math.frexp(float(r))
        q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # TfLiteRound: half away from zero
        if q_fixed == 1 << 31:
            q_fixed //= 2
            e += 1
        if e < -31:
            q_fixed, e = 0, 0
        mult.flat[i], shift.flat[i] = q_fixed, e
    return mult, shift


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` on int64 numpy arrays (broadcast): what
    :func:`rescale` and the requantize kernel compute, for tables made at compile time
    (:mod:`qbench.tvm.int8_lowering`'s lookup tables)."""
    x, multiplier, shift = (np.asarray(a, np.int64) for a in (x, multiplier, shift))
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    high = ((x << left) * multiplier + (1 << 30)) >> 31
    half = (np.int64(1) << right) >> 1
    return (high + half - ((high < 0) & (right > 0))) >> right


# ------------------------------------------------------------------------ the same, as Relax
def const(value, dtype: str):
    from tvm import relax

    return relax.const(np.asarray(value, dtype=dtype), dtype)


def rescale(acc, multiplier: np.ndarray, shift: np.ndarray):
    """``MultiplyByQuantizedMultiplier(acc, multiplier, shift)`` in int64 Relax ops: ADD's two input
    rescales, which are not followed by a zero point and clamp (every requantization to an int8
    output, ADD's last step included, is :func:`qbench.tvm.avx2_int8_kernels.requantize_prim_func`,
    the same arithmetic as one kernel); per-channel arrays broadcast over the last axis, scalars over all.

    Written so each intermediate is used once or twice (a scheduler that inlines the chain copies a
    subexpression once per use).  Two identities make that possible:
    ``SaturatingRoundingDoublingHighMul(a, b)`` is ``(a*b + 2**30) >> 31`` (gemmlowp's sign-dependent
    nudge and C's truncating division cancel out), and ``RoundingDivideByPOT(x, e)`` is
    ``(x + 2**(e-1) - (x < 0)) >> e`` for ``e > 0``.  The tests check it against a literal
    transcription of TFLite's definition."""
    from tvm import relax

    op = relax.op
    multiplier, shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    half = (np.int64(1) << right) >> 1  # 2**(e-1), or 0 when e == 0

    def c(a):
        a = np.asarray(a, np.int64)
        return const(a.reshape(()) if a.size == 1 else a, "int64")

    x = op.astype(acc, "int64")
    if np.any(left):
        x = op.left_shift(x, c(left))
    high = op.right_shift(op.add(op.multiply(x, c(multiplier)), c(1 << 30)), c(31))
    if not np.any(right):
        return high
    ties_down = op.multiply(op.astype(op.less(high, c(0)), "int64"), c((half > 0).astype(np.int64)))
    return op.right_shift(op.subtract(op.add(high, c(half)), ties_down), c(right))


def centred(x, zero_point: int, dtype: str):
    """``x - zero_point`` in ``dtype`` (wide enough for 255 in magnitude: int16 or wider)."""
    from tvm import relax

    return relax.op.subtract(relax.op.astype(x, dtype), const(zero_point, dtype))
