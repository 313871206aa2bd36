"""TVM-int8 vs LiteRT-int8: do two compilers of the *same* int8 model agree?

Bit-exact agreement is not expected: LiteRT's optimized (XNNPACK) kernels,
LiteRT's reference kernels and TVM (which lowers int8 ops to dequantize ->
fp32 -> quantize) requantize with different rounding, and the differences
compound over ~50 layers.  The yardstick is therefore LiteRT against itself:
TVM must be about as close to LiteRT's default kernels as LiteRT's own
reference kernels are.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def int8_trio(qbench, qbench_settings):
    """(LiteRT default kernels, LiteRT reference kernels, TVM) on the int8 model, plus int8 test inputs."""
    if "tvm-avx2-int8" not in qbench_settings.variants:
        pytest.skip("tvm-avx2-int8 variant not selected")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from qbench.runtimes import LiteRTRunner

    int8 = qbench.builder.build("tflite-int8")
    litert = LiteRTRunner(int8.path, "tflite-int8", qbench_settings.threads)
    tvm = qbench.runner("tvm-avx2-int8")
    ref = Interpreter(model_path=str(int8.path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    ref_in, ref_out = ref.get_input_details()[0]["index"], ref.get_output_details()[0]["index"]

    def run_ref(q):
        ref.set_tensor(ref_in, q)
        ref.invoke()
        return ref.get_tensor(ref_out).copy()

    x, _ = qbench.test_inputs()
    q = np.stack([litert.prepare(x[i : i + 1]) for i in range(len(x))])  # (N, 1, H, W, 3) int8
    assert tvm.input_qparams == litert.input_qparams, "TVM and LiteRT disagree on the input quantization"
    return {"litert": litert.invoke, "ref": run_ref, "tvm": tvm.invoke_raw, "inputs": q, "out_q": litert.output_qparams}


def _outputs(trio, inputs):
    return {k: np.stack([trio[k](q)[0] for q in inputs]).astype(np.int16) for k in ("litert", "ref", "tvm")}


def _compare(out):
    top = {k: v.argmax(axis=1) for k, v in out.items()}
    return {
        "tvm_agree": float(np.mean(top["tvm"] == top["litert"])),
        "ref_agree": float(np.mean(top["ref"] == top["litert"])),
        "tvm_lsb": float(np.mean(np.abs(out["tvm"] - out["litert"]).max(axis=1))),
        "ref_lsb": float(np.mean(np.abs(out["ref"] - out["litert"]).max(axis=1))),
    }


def _perturb(inputs, seed: int, amplitude: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-amplitude, amplitude + 1, size=inputs.shape)
    return np.clip(inputs.astype(np.int16) + noise, -128, 127).astype(np.int8)


def test_tvm_agrees_with_litert_like_litert_reference_kernels(qbench, int8_trio):
    """On the whole test split: TVM's top-1 agreement and output distance vs LiteRT
    are within a small margin of LiteRT-reference-kernels vs LiteRT."""
    stats = _compare(_outputs(int8_trio, int8_trio["inputs"]))
    qbench.record_reference("int8-agreement", stats)
    assert stats["tvm_agree"] >= stats["ref_agree"] - 0.02, stats
    assert stats["tvm_lsb"] <= 1.5 * stats["ref_lsb"] + 2.0, stats


@settings(deadline=None, max_examples=6, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), amplitude=st.integers(0, 6))
def test_agreement_holds_under_input_perturbation(int8_trio, seed, amplitude):
    """Hypothesis perturbs every test input by up to ``amplitude`` LSB; the
    agreement envelope must still hold (a 5-point margin for the smaller sample effect)."""
    stats = _compare(_outputs(int8_trio, _perturb(int8_trio["inputs"], seed, amplitude)))
    assert stats["tvm_agree"] >= stats["ref_agree"] - 0.05, stats
    assert stats["tvm_lsb"] <= 1.5 * stats["ref_lsb"] + 3.0, stats


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tvm_output_is_valid_and_deterministic(int8_trio, data):
    """Any int8 input (a test image plus hypothesis noise): TVM returns a well-formed
    quantized softmax, the same bits on a second call, and LiteRT's output shape/dtype."""
    inputs = int8_trio["inputs"]
    i = data.draw(st.integers(0, len(inputs) - 1), label="image")
    amplitude = data.draw(st.integers(0, 127), label="amplitude")
    q = _perturb(inputs[i : i + 1], data.draw(st.integers(0, 2**32 - 1), label="seed"), amplitude)[0]
    first, second, lit = int8_trio["tvm"](q), int8_trio["tvm"](q), int8_trio["litert"](q)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == lit.dtype == np.int8 and first.shape == lit.shape
    oq = int8_trio["out_q"]
    probs = (first.astype(np.float64) - oq.zero_point) * oq.scale
    assert probs.min() >= 0.0
    assert abs(probs.sum() - 1.0) <= first.shape[-1] * oq.scale  # one half-step of rounding per class, both ways
