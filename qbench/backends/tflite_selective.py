"""``tflite-int8-selective``: full-integer PTQ with the K operators that quantize worst kept in float.

qbench's per-layer report shows *where* int8 loses precision; this variant
is the next step a user takes: keep the worst few operators in float and
see what that buys in accuracy and costs in latency.  Everything goes
through TFLite's ``QuantizationDebugger``:

* **ranking**: the debugger's layer-wise verification (``NumericVerify``):
  each quantized operator against the same operator in float on the same
  dequantized inputs, so an operator is blamed for the error it adds, not
  for what earlier ones left it (the cumulative SNR of the per-layer report
  blames blocks 11-14 of MobileNetV2 for errors made earlier).  The figure
  is that operator-local SNR in dB, lowest first, over the **train-split**
  calibration images (the ones the model is calibrated on; never a test
  image);
* **models**: the debugger's calibrated model quantized again with
  ``denylisted_nodes`` = the K worst operators' output tensors
  (``get_nondebug_quantized_model``): one calibration for every K.

The debugger's models take and return float (a QUANTIZE op first, a
DEQUANTIZE last); every other operator is int8 unless it is denylisted
(then float, with DEQUANTIZE/QUANTIZE around it).  Which K is the row in
the table is decided by the sweep (:mod:`qbench.measure.selective`); each
K's model is a point of it, built through ``ctx.at_point(K)``.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Variant
from qbench.backends.kernels import int8_with_float
from qbench.backends.tflite import LITERT_MODULES, load_litert, silence_stdout, tflite_io_params
from qbench.core.errors import QBenchError

NAME = "tflite-int8-selective"
DEBUG_IMAGES = 64  # calibration images the ranking runs on (the first of the calibration sample)

_DEBUGGERS: dict[str, tuple] = {}  # calibration key -> (debugger, ranking): one calibration per build process


def _signal(f, _q, _scale, _zero_point) -> float:
    return float(np.sum(np.square(f.astype(np.float64))))


def _noise(f, q, scale, zero_point) -> float:
    return float(np.sum(np.square(f.astype(np.float64) - (q.astype(np.float64) - zero_point) * scale)))


def _converter(model, calibration: np.ndarray):
    import tensorflow as tf

    def representative_dataset():
        for sample in calibration:
            yield [sample[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # float kernels must be allowed for the denylisted operators
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def rank_operators(model, calibration: np.ndarray, images: np.ndarray) -> tuple[object, list[dict]]:
    """The debugger calibrated on ``calibration`` and every quantized operator's local SNR on ``images``
    (both train-split model input), lowest first: ``{"tensor", "op", "snr_db"}``."""
    import tensorflow as tf

    debug = tf.lite.experimental
    data = np.asarray(images, np.float32)
    with warnings.catch_warnings(), silence_stdout():
        warnings.simplefilter("ignore")  # the debugger runs tf.lite.Interpreter, which warns that LiteRT replaces it
        debugger = debug.QuantizationDebugger(
            converter=_converter(model, np.asarray(calibration, np.float32)),
            debug_dataset=lambda: ([x[None]] for x in data),
            debug_options=debug.QuantizationDebugOptions(fully_quantize=True),
        )
        # a second debugger on the same debug model, with every tensor kept: the direct comparison reads the
        # float and quantized outputs of each operator, which an interpreter reusing its arena overwrites
        verify = debug.QuantizationDebugger(
            quant_debug_model_content=debugger.quant_model,
            debug_dataset=lambda: ([x[None]] for x in data),
            debug_options=debug.QuantizationDebugOptions(layer_direct_compare_metrics={"signal": _signal, "noise": _noise}),
        )
        verify.run()
    ops = _defining_ops(verify)
    ranking = []
    for name, metrics in verify.layer_statistics.items():
        tensor, _ = verify._get_operand_name_and_index(name)  # the float tensor's name: what denylisted_nodes takes
        signal, noise = float(metrics["signal"]), max(float(metrics["noise"]), 1e-30)
        # no signal at all (a dead activation, as random weights give): ranked first, stored as None (JSON has no -inf)
        snr = 10 * np.log10(signal / noise) if signal > 0 else None
        ranking.append({"tensor": tensor, "op": ops.get(name, "?"), "snr_db": snr})
    ranking.sort(key=lambda r: -np.inf if r["snr_db"] is None else r["snr_db"])
    return debugger, ranking


def _defining_ops(verify) -> dict[str, str]:
    """NumericVerify tensor name -> the op whose output it checks (CONV_2D, ADD, ...)."""
    out = {}
    interp = verify._quant_interpreter
    producer = {t: op["op_name"] for op in interp._get_ops_details() for t in op["outputs"]}
    for op in interp._get_ops_details():
        if op["op_name"] == "NumericVerify":
            name = interp._get_tensor_details(op["outputs"][0], subgraph_index=0)["name"]
            out[name] = producer.get(op["inputs"][0], "?")
    return out


def selective_model(debugger, ranking: list[dict], k: int) -> bytes:
    """The model with the ``k`` worst operators of ``ranking`` denylisted (kept in float)."""
    import tensorflow as tf

    if k > len(ranking):
        raise QBenchError(f"{NAME}: K={k} asked for, the model has {len(ranking)} quantized operators")
    with warnings.catch_warnings(), silence_stdout():
        warnings.simplefilter("ignore")
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=[r["tensor"] for r in ranking[:k]], fully_quantize=True
        )
        return debugger.get_nondebug_quantized_model()


def ranked(ctx) -> tuple[object, list[dict]]:
    """The debugger and the operators ranked worst first, once per calibration set in a build process (the
    OpenVINO sweep, :mod:`qbench.backends.openvino_selective`, takes the same ranking)."""
    key = ctx.calibration_key()
    if key not in _DEBUGGERS:
        calibration = ctx.calibration_inputs()  # train split only (VariantBuilder.calibration_indices)
        ctx.progress(f"{NAME}: ranking operators by their own int8 error on {min(len(calibration), DEBUG_IMAGES)} train images")
        _DEBUGGERS[key] = rank_operators(ctx.keras_model(), calibration, calibration[:DEBUG_IMAGES])
    return _DEBUGGERS[key]


def ranking_record(ranking: list[dict]) -> list[dict]:
    """The ranking as a sidecar stores it (SNR to 0.001 dB; None where an operator had no signal)."""
    return [{**r, "snr_db": None if r["snr_db"] is None else round(r["snr_db"], 3)} for r in ranking]


def build_selective(ctx, out: Path) -> dict:
    k = ctx.sweep_point
    if k is None:
        raise QBenchError(f"{NAME} is built for each K of the selective sweep (--qbench-selective-k), not on its own")
    debugger, ranking = ranked(ctx)
    out.write_bytes(selective_model(debugger, ranking, int(k)))
    return {
        **tflite_io_params(out),
        "selective_k": int(k),
        "float_operators": [r["tensor"] for r in ranking[: int(k)]],
        "ranking": ranking_record(ranking),
        "ranking_split": "train",
        "ranking_images": int(min(len(ctx.calibration_indices()), DEBUG_IMAGES)),
        "calibration_samples": int(len(ctx.calibration_indices())),
        "calibration_split": "train",
    }


register(
    Variant(
        name=NAME,
        description=(
            "full-integer PTQ with the K operators of worst own int8 error (ranked on train images) kept in float, "
            "K chosen by the selective sweep"
        ),
        suffix=".tflite",
        build=build_selective,
        load=load_litert(NAME),
        runtime_modules=LITERT_MODULES,
        cache_key=lambda ctx: (("tensorflow", version("tensorflow")), ctx.calibration_key(), ("k", ctx.sweep_point)),
        swept=True,
        kernel_isa=int8_with_float,
    )
)
