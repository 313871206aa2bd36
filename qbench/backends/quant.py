"""Quantization arithmetic following the TFLite int8 quantization spec.

https://ai.google.dev/edge/litert/models/quantization_spec

* real = (q - zero_point) * scale
* float -> int rounding is *round half away from zero* (``TfLiteRound`` is
  ``std::round``), not truncation and not banker's rounding;
* results saturate to the integer type's range;
* real 0.0 is exactly representable (the zero point is an integer);
* weights are symmetric (zero_point == 0), per output channel, in [-127, 127].

Kenning's TFLite runtime quantizes inputs with ``(x / scale + zp).astype(int8)``,
which truncates toward zero (and wraps instead of saturating); these helpers do
what the TFLite kernels do.  ``benchmarks/test_quantization_spec.py`` checks
them bit-for-bit against LiteRT's own QUANTIZE/DEQUANTIZE kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_INT_RANGES = {
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int16): (-32768, 32767),
}


def int_range(dtype) -> tuple[int, int]:
    dtype = np.dtype(dtype)
    try:
        return _INT_RANGES[dtype]
    except KeyError:
        raise ValueError(f"unsupported quantized dtype {dtype}; expected int8, uint8 or int16") from None


def round_half_away_from_zero(x: np.ndarray) -> np.ndarray:
    """C ``round()``: ties go away from zero (2.5 -> 3, -2.5 -> -3).

    Implemented with ``trunc`` and an exact fractional part, so it is correct
    for every float (``floor(|x| + 0.5)`` is not: it rounds 0.49999997 up).
    """
    x = np.asarray(x)
    whole = np.trunc(x)
    with np.errstate(invalid="ignore"):  # inf - inf for infinite inputs; they stay infinite
        frac = x - whole  # exact for IEEE floats
    return whole + np.where(np.abs(frac) >= 0.5, np.sign(x), 0).astype(x.dtype)


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine quantization parameters."""

    scale: float
    zero_point: int
    dtype: str = "int8"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"quantization scale must be a positive finite number, got {self.scale!r}")
        lo, hi = int_range(self.dtype)
        if not lo <= int(self.zero_point) <= hi:
            raise ValueError(f"zero point {self.zero_point} outside {self.dtype} range [{lo}, {hi}]")

    @classmethod
    def from_details(cls, details: dict) -> QParams | None:
        """From a LiteRT ``get_input_details()`` entry; ``None`` for float tensors."""
        scale, zero_point = details["quantization"]
        if scale == 0.0:
            return None
        return cls(float(scale), int(zero_point), np.dtype(details["dtype"]).name)

    def to_json(self) -> dict:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point), "dtype": self.dtype}


# The float32 constant just below 0.5.  For every float32 s with |s| < 2**22,
# trunc(s + copysign(HALF_DOWN, s)) is s rounded half away from zero: checked
# for all 1,249,902,592 non-negative float32 values below 2**22 (the sign is
# symmetric).  Adding 0.5 instead would round 0.49999997 up to 1.
HALF_DOWN = np.float32(0.49999997)
_SIGN_BIT = np.int32(-(2**31))
_WIDER = {np.dtype(np.int8): np.int16, np.dtype(np.uint8): np.int16, np.dtype(np.int16): np.int32}
_UNSIGNED = {np.dtype(np.int8): np.uint8, np.dtype(np.uint8): np.uint8, np.dtype(np.int16): np.uint16}


class Quantizer:
    """TFLite's QUANTIZE kernel for one tensor shape, in preallocated buffers.

    The integers are exactly :func:`quantize`'s (which is this class used
    once); the point of the class is speed.  A 224x224x3 image took 1.95 ms
    through the obvious numpy expression (float64 temporaries, fresh
    buffers that page-fault on every call), as much as LiteRT's whole int8
    invoke; here it is a handful of in-place float32 passes over reused
    buffers (about 0.11 ms, development VM):

    1. ``s = x / scale`` in float32, as the kernel divides;
    2. clip ``s`` to ``[lo - zp, hi - zp]``: saturation, done before rounding
       (the bounds are integers, so clipping commutes with rounding);
    3. ``s + copysign(HALF_DOWN, s)``, the sign bit copied with integer ops;
    4. the cast to a wider integer truncates toward zero: that is the
       rounding half away from zero;
    5. add the zero point and narrow to the quantized type.

    When ``lo - zp >= 0`` (int8 with zero point -128: every input that
    starts as a [0, 1] image) the clipped ``s`` is never negative, so steps
    3-5 shrink to ``s + HALF_DOWN``, one truncating cast into the unsigned
    type of the output's width, and a wrapping add of the zero point (the
    result is in range, so the wrapped bits are its two's complement).  That
    halves the memory traffic, which is what the call costs once LiteRT's
    invoke has flushed the caches: 0.19 ms in place of 0.11 ms hot, before
    this path (224x224x3, development VM).

    NaN (no kernel defines it; LiteRT's reference and optimized kernels give
    different answers) becomes the zero point.  It costs nothing to find: the
    clipped values always fit the integer type, so the truncating cast raises
    the CPU's invalid-operation flag only for NaN, and numpy turns that flag
    into ``FloatingPointError``; then the call is redone with NaN set to 0.
    (A ``max`` pass to look for NaN cost 35 us of the 150 us.)
    """

    def __init__(self, shape, scale: float, zero_point: int, dtype=np.int8):
        self.lo, self.hi = int_range(dtype)
        self.dtype = np.dtype(dtype)
        self.scale = np.float32(scale)
        self.zero_point = int(zero_point)
        self.shape = tuple(shape)
        self._unsigned = np.dtype(_UNSIGNED[self.dtype])
        self._nonnegative = self.lo - self.zero_point >= 0
        self._s = np.empty(self.shape, np.float32)
        if not self._nonnegative:  # the sign-handling path's buffers
            self._t = np.empty(self.shape, np.float32)
            self._wide = np.empty(self.shape, _WIDER[self.dtype])
        self._zp_bits = self._unsigned.type(self.zero_point % (1 << (8 * self._unsigned.itemsize)))

    def __call__(self, x) -> np.ndarray:
        """Quantized copy of ``x`` (float, shape ``self.shape``); a new array each call."""
        x = np.asarray(x, dtype=np.float32)
        with np.errstate(over="ignore", invalid="raise"):
            try:
                return self._quantize(x, nan_to_zero=False)
            except FloatingPointError:  # the in-range cast is invalid only for NaN: redo with NaN as 0
                return self._quantize(x, nan_to_zero=True)

    def _quantize(self, x: np.ndarray, nan_to_zero: bool) -> np.ndarray:
        s = self._s
        np.divide(x, self.scale, out=s)
        if nan_to_zero:
            s[np.isnan(s)] = 0.0
        np.clip(s, self.lo - self.zero_point, self.hi - self.zero_point, out=s)
        if self._nonnegative:
            np.add(s, HALF_DOWN, out=s)
            out = np.empty(self.shape, self.dtype)
            bits = out.view(self._unsigned)
            np.copyto(bits, s, casting="unsafe")  # truncates toward zero; fits: s <= hi - lo + 0.5
            np.add(bits, self._zp_bits, out=bits)  # wraps modulo 2**width: the two's complement of the result
            return out
        t, wide = self._t, self._wide
        sign_bits = t.view(np.int32)
        np.bitwise_and(s.view(np.int32), _SIGN_BIT, out=sign_bits)
        np.bitwise_or(sign_bits, HALF_DOWN.view(np.int32), out=sign_bits)
        np.add(s, t, out=t)
        np.copyto(wide, t, casting="unsafe")  # float -> int truncates toward zero
        np.add(wide, wide.dtype.type(self.zero_point), out=wide)
        return wide.astype(self.dtype)


def quantize(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Quantize float values like TFLite's QUANTIZE kernel.

    Computed in float32 (``val / scale`` as the kernel does), rounded half away
    from zero, offset by the zero point, then saturated to ``dtype``; NaN
    becomes the zero point.  One-off use of :class:`Quantizer`.
    """
    x = np.asarray(x, dtype=np.float32)
    return Quantizer(x.shape, scale, zero_point, dtype)(x)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """real = (q - zero_point) * scale, as float32 (one rounding, like TFLite)."""
    q = np.asarray(q)
    return ((q.astype(np.int64) - int(zero_point)).astype(np.float64) * float(np.float32(scale))).astype(np.float32)


def choose_qparams(rmin: float, rmax: float, dtype=np.int8) -> QParams:
    """Asymmetric activation parameters for the range ``[rmin, rmax]``.

    The range is first widened to contain 0 so that real zero is exactly
    representable (the zero point is an integer), as the spec requires.
    """
    lo, hi = int_range(dtype)
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax == rmin:
        return QParams(1.0, 0 if lo < 0 else lo, np.dtype(dtype).name)
    scale = float(max(np.float32((rmax - rmin) / (hi - lo)), np.finfo(np.float32).tiny))
    zero_point = int(np.clip(round_half_away_from_zero(np.float64(lo - rmin / scale)), lo, hi))
    return QParams(scale, zero_point, np.dtype(dtype).name)


def quantize_weights_symmetric_per_channel(w, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 weight quantization (zero_point 0, [-127, 127]).

    Returns ``(q, scales)`` with ``scales[c] = max|w[c]| / 127`` along ``axis``
    (all-zero channels get scale 1 so they stay exactly zero).
    """
    w = np.asarray(w, dtype=np.float32)
    axis = axis % w.ndim
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    max_abs = np.max(np.abs(w), axis=reduce_axes) if reduce_axes else np.abs(w)
    scales = np.where(max_abs > 0, max_abs / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    scales = np.maximum(scales, np.finfo(np.float32).tiny)  # subnormal weights must not give scale 0
    shape = [1] * w.ndim
    shape[axis] = -1
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = w / scales.reshape(shape)
    q = np.clip(round_half_away_from_zero(scaled), -127, 127).astype(np.int8)
    return q, scales


def dequantize_per_channel(q, scales, axis: int) -> np.ndarray:
    q = np.asarray(q)
    shape = [1] * q.ndim
    shape[axis % q.ndim] = -1
    return (q.astype(np.float64) * np.asarray(scales, np.float64).reshape(shape)).astype(np.float32)
