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


def quantize(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Quantize float values like TFLite's QUANTIZE kernel.

    Computed in float32 (``val / scale`` as the kernel does), rounded half away
    from zero, offset by the zero point, then saturated to ``dtype``.
    """
    lo, hi = int_range(dtype)
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = x / np.float32(scale)
    rounded = round_half_away_from_zero(scaled).astype(np.float64)
    rounded = np.nan_to_num(rounded, nan=0.0, posinf=hi - zero_point + 1, neginf=lo - zero_point - 1)
    q = np.clip(rounded + zero_point, lo, hi)
    return q.astype(dtype)


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
