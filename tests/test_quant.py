"""The fast input quantizer gives exactly the integers of a plain float64 spec expression.

``qbench.backends.quant.Quantizer`` rounds with a float32 trick and integer casts to be
fast (see its docstring); here it is held against the obvious, slow spec
arithmetic for every quantized type, NaN and infinities included.  The
decimal oracle and LiteRT's own kernels check it again in
``benchmarks/test_quantization_spec.py``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qbench.backends.quant import HALF_DOWN, Quantizer, int_range, quantize


def plain_spec_quantize(x, scale, zero_point, dtype):
    """float32 quotient, exact half-away rounding in float64, saturation; NaN -> zero point."""
    lo, hi = int_range(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        quotient = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
    rounded = np.where(np.isnan(quotient), 0.0, np.copysign(np.floor(np.abs(quotient) + 0.5), quotient))
    return np.clip(rounded + zero_point, lo, hi).astype(dtype)


any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
scales = st.floats(min_value=2.0**-17, max_value=1024.0, width=32, allow_subnormal=False)


@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=4, max_side=5), elements=any_f32),
    scales,
    st.sampled_from([np.int8, np.uint8, np.int16]),
    st.data(),
)
@example(np.float32([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, -0.0, np.nan, np.inf, -np.inf]), 1.0, np.int8, None)
def test_quantizer_matches_plain_spec_arithmetic(x, scale, dtype, data):
    lo, hi = int_range(dtype)
    zero_point = 0 if data is None else data.draw(st.integers(lo, hi))
    expected = plain_spec_quantize(x, scale, zero_point, dtype)
    quantizer = Quantizer(x.shape, scale, zero_point, dtype)
    first = quantizer(x)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(quantizer(np.zeros_like(x)), np.full(x.shape, zero_point, dtype))  # buffers reused
    np.testing.assert_array_equal(first, expected)  # and the first result was a copy, not a view of them
    np.testing.assert_array_equal(quantize(x, scale, zero_point, dtype), expected)


@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=any_f32),
    scales,
    st.sampled_from([np.int8, np.uint8, np.int16]),
)
@example(np.float32([0.5, 1.5, 254.5, 255.49999, 255.5, 0.49999997, -0.5, np.nan, np.inf, -np.inf]), 1.0, np.int8)
def test_the_non_negative_fast_path_too(x, scale, dtype):
    """Zero point at the type's minimum (a [0, 1] image's int8 input): the unsigned-cast path, NaN included."""
    lo, _ = int_range(dtype)
    quantizer = Quantizer(x.shape, scale, lo, dtype)
    assert quantizer._nonnegative
    np.testing.assert_array_equal(quantizer(x), plain_spec_quantize(x, scale, lo, dtype))


def test_half_down_rounding_on_every_float_near_the_ties():
    """Every float32 within 64 ulps of k + 1/2 for |k| <= 400: the neighbourhoods where a rounding trick breaks."""
    ties = np.arange(-400, 401, dtype=np.float32) + np.float32(0.5)
    near = [ties]
    for direction in (np.inf, -np.inf):
        cur = ties
        for _ in range(64):
            cur = np.nextafter(cur, np.float32(direction))
            near.append(cur)
    s = np.concatenate(near)
    fast = np.trunc(s + np.copysign(HALF_DOWN, s))
    exact = np.copysign(np.floor(np.abs(s.astype(np.float64)) + 0.5), s)
    np.testing.assert_array_equal(fast, exact)
