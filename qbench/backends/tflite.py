"""TFLite variants, converted by ``TFLiteConverter`` and run by LiteRT (``ai_edge_litert``).

* ``tflite-fp32``  - no optimizations
* ``tflite-fp16``  - float16 weights (``target_spec.supported_types = [tf.float16]``), float32 compute and I/O
* ``tflite-dynamic`` - dynamic-range quantization: int8 weights, float activations and I/O
                      (no calibration: activations are quantized on the fly per call)
* ``tflite-int8``  - full-integer post-training quantization (int8 kernels, int8 input and
                     output), calibrated on train-split samples only
* ``tflite-int16x8`` - the same with 16-bit activations and 8-bit weights (int16 input and
                       output, symmetric activations), TFLite's accuracy-first integer mode
"""

from __future__ import annotations

import contextlib
import io
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant
from qbench.backends.kernels import fixed, float_dispatch, int8_dispatch
from qbench.backends.quant import QParams
from qbench.core.errors import QBenchError, one_line

# LiteRT kernel sets a runner can be loaded with (``kernels=`` option).
KERNELS = {
    "default": "BUILTIN",  # optimized builtin kernels plus the default XNNPACK delegate
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",  # optimized builtin kernels only
    "reference": "BUILTIN_REF",  # the reference kernels: the spec's arithmetic
}


@contextlib.contextmanager
def silence_stdout():
    """TFLiteConverter prints the whole SavedModel signature; keep the terminal readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _converter(model):
    """A converter for ``model``: Keras 3 models as TFLite converts them, tf-keras ones from one traced call.

    ``from_keras_model`` of a tf-keras model (``tflite-int8-qat``'s tfmot model) first saves it as a SavedModel,
    which walks every fake-quant wrapper's object graph: 34-44 s of a 44 s conversion on the smoke model, for a
    graph the converter then freezes anyway.  Converting the traced inference call, not lowered through a
    SavedModel, gave the same int8 outputs (0 LSB apart on 100 images) in 2.2 s; the file only lacks the
    signature def qbench never reads.  Keras 3 models keep ``from_keras_model``: its path is what the cache keys
    and stored runs were built with.
    """
    import tensorflow as tf

    if not _is_tf_keras(model):
        return tf, tf.lite.TFLiteConverter.from_keras_model(model)
    spec = model.inputs[0]
    call = tf.function(lambda x: model(x, training=False))
    traced = call.get_concrete_function(tf.TensorSpec([None, *spec.shape[1:]], spec.dtype))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([traced], model)
    converter.experimental_lower_to_saved_model = False
    return tf, converter


def _is_tf_keras(model) -> bool:
    try:
        import tf_keras
    except ImportError:
        return False
    return isinstance(model, tf_keras.Model)


def convert_tflite_fp32(model) -> bytes:
    tf, converter = _converter(model)
    with silence_stdout():
        return converter.convert()


def convert_tflite_fp16(model) -> bytes:
    tf, converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    with silence_stdout():
        return converter.convert()


def convert_tflite_dynamic(model) -> bytes:
    """Dynamic range: ``Optimize.DEFAULT`` without a representative dataset quantizes the weights only."""
    tf, converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with silence_stdout():
        return converter.convert()


# Full-integer schemes: activation type -> (converter op set name, input/output dtype name).
FULL_INTEGER = {
    "int8": ("TFLITE_BUILTINS_INT8", "int8"),
    "int16": ("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8", "int16"),
}


def convert_tflite_integer(model, calibration: np.ndarray, activations: str = "int8") -> bytes:
    """Full-integer PTQ: integer kernels only, integer input and output tensors.

    ``calibration`` is float model input (already preprocessed) from the train
    split.  ``activations`` is ``int8`` (TFLite's int8 scheme) or ``int16``
    (16x8: int16 activations, int8 weights).
    """
    if len(calibration) == 0:
        raise QBenchError(f"no calibration samples: cannot quantize to {activations}")
    calibration = np.asarray(calibration, dtype=np.float32)

    def representative_dataset():
        for sample in calibration:
            yield [sample[None, ...]]

    ops, io_dtype = FULL_INTEGER[activations]
    tf, converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, ops)]
    converter.inference_input_type = getattr(tf, io_dtype)
    converter.inference_output_type = getattr(tf, io_dtype)
    with silence_stdout():
        return converter.convert()


def _interpreter(path_or_buf, threads: int | None = None, kernels: str = "default"):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if isinstance(path_or_buf, (bytes, bytearray)):
        kwargs = {"model_content": bytes(path_or_buf)}
    else:
        kwargs = {"model_path": str(path_or_buf)}
    resolver = getattr(OpResolverType, KERNELS[kernels])
    return Interpreter(**kwargs, num_threads=threads, experimental_op_resolver_type=resolver)


def tflite_io_params(path_or_buf) -> dict:
    """Input/output shape, dtype and quantization of a .tflite model, via LiteRT."""
    try:
        interp = _interpreter(path_or_buf)
    except Exception as exc:
        raise QBenchError(f"LiteRT cannot load the model: {one_line(exc)}") from None
    (inp,) = interp.get_input_details()
    (out,) = interp.get_output_details()

    def info(d):
        q = QParams.from_details(d)
        return {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quant": q.to_json() if q else None,
        }

    return {"input": info(inp), "output": info(out)}


def reference_kernel_blocker(path: Path) -> str | None:
    """Why LiteRT's reference kernels would abort on this model, or ``None``.

    The reference SOFTMAX kernel's Prepare calls ``PreprocessSoftmaxScaling``,
    which ``TFLITE_CHECK``s that ``beta * input_scale * 2**26 > 1`` and
    aborts the process otherwise.  A model whose logits span almost nothing
    (random weights: the calibrated softmax input scale comes out near 1e-8)
    trips it; the optimized kernels use a lookup table and do not check.
    """
    from qbench.backends.tflite_model import softmax_input_scales

    for beta, scale in softmax_input_scales(Path(path).read_bytes()):
        if beta * scale * 2**26 <= 1.0:
            return (
                f"LiteRT's reference SOFTMAX kernel aborts on this model (TFLITE_CHECK in PreprocessSoftmaxScaling: "
                f"beta*input_scale*2^26 = {beta * scale * 2**26:.3f} must exceed 1; softmax input scale {scale:.3g})"
            )
    return None


class LiteRTRunner(Runner):
    """LiteRT interpreter; ``kernels`` picks the kernel set (see :data:`KERNELS`)."""

    def __init__(
        self, model_path: Path, variant: str, threads: int | None = None, kernels: str = "default", batch: int | None = None
    ):
        self.variant = variant
        self.kernels = kernels
        self._args = (model_path, variant, threads, kernels)
        try:
            self.interp = _interpreter(model_path, threads, kernels)
            if batch is not None:
                (inp,) = self.interp.get_input_details()
                self.interp.resize_tensor_input(inp["index"], [int(batch), *(int(s) for s in inp["shape"][1:])])
            self.interp.allocate_tensors()
        except Exception as exc:
            raise QBenchError(f"{variant}: LiteRT cannot load {model_path}: {one_line(exc)}") from None
        (inp,) = self.interp.get_input_details()
        (out,) = self.interp.get_output_details()
        self._in, self._out = inp["index"], out["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self.input_qparams = QParams.from_details(inp)
        self.output_qparams = QParams.from_details(out)

    def prepare(self, x):
        return self.quantize_input(self._check(x)).astype(self._in_dtype, copy=False)

    def invoke(self, prepared):
        self.interp.set_tensor(self._in, prepared)
        self.interp.invoke()
        return self.interp.get_tensor(self._out).copy()

    def invoke_raw(self, raw_input):
        return self.invoke(np.ascontiguousarray(raw_input, dtype=self._in_dtype))

    def batch_runner(self, batch: int) -> Runner:
        """A second interpreter of the same model with its input resized to ``batch`` (``resize_tensor_input``)."""
        return self if batch == self.input_shape[0] else LiteRTRunner(*self._args, batch=batch)


def ruy_hybrid(flags: frozenset) -> str:
    """Dynamic-range models run TFLite's hybrid kernels: int8 GEMMs through ruy, which picks its path by CPU."""
    path = "AVX-512" if "avx512f" in flags else "AVX2/FMA" if {"avx2", "fma"} <= flags else "AVX"
    return f"int8 x float hybrid kernels (ruy {path})"


LITERT_MODULES = ("ai_edge_litert.interpreter",)  # what a LiteRT load imports (Variant.runtime_modules)


def load_litert(name: str):
    def load(path, meta, threads, kernels: str = "default", **_):
        return LiteRTRunner(path, name, threads, kernels)

    return load


def _tf_version(_ctx) -> tuple:
    return ("tensorflow", version("tensorflow"))


def _build_float(convert):
    def build(ctx, out: Path) -> dict:
        out.write_bytes(convert(ctx.keras_model()))
        return tflite_io_params(out)

    return build


def _build_integer(activations: str):
    def build(ctx, out: Path) -> dict:
        calib = ctx.calibration_inputs()
        ctx.progress(f"calibrating {activations} activations on {len(calib)} train-split samples")
        out.write_bytes(convert_tflite_integer(ctx.keras_model(), calib, activations))
        return {**tflite_io_params(out), "calibration_samples": int(len(calib)), "calibration_split": "train"}

    return build


register(
    Variant(
        name="tflite-fp32",
        description="`TFLiteConverter`, no optimizations, run by the LiteRT interpreter",
        suffix=".tflite",
        build=_build_float(convert_tflite_fp32),
        load=load_litert("tflite-fp32"),
        runtime_modules=LITERT_MODULES,
        cache_key=_tf_version,
        lossless_tolerance=1e-3,
        kernel_isa=float_dispatch,
    )
)
register(
    Variant(
        name="tflite-fp16",
        description="float16 weights (`target_spec.supported_types = [tf.float16]`), float32 compute and I/O",
        suffix=".tflite",
        build=_build_float(convert_tflite_fp16),
        load=load_litert("tflite-fp16"),
        runtime_modules=LITERT_MODULES,
        cache_key=_tf_version,
        lossless_tolerance=5e-2,  # float16 weights: 2.1e-2 seen on the smoke model, predictions identical
        kernel_isa=float_dispatch,
    )
)
register(
    Variant(
        name="tflite-dynamic",
        description="dynamic-range quantization: int8 weights, float activations and I/O, no calibration",
        suffix=".tflite",
        build=_build_float(convert_tflite_dynamic),
        load=load_litert("tflite-dynamic"),
        runtime_modules=LITERT_MODULES,
        cache_key=_tf_version,
        kernel_isa=ruy_hybrid,
    )
)
register(
    Variant(
        name="tflite-int8",
        description=(
            "full-integer post-training quantization (int8 kernels, int8 input and output), calibrated on train-split images only"
        ),
        suffix=".tflite",
        build=_build_integer("int8"),
        load=load_litert("tflite-int8"),
        runtime_modules=LITERT_MODULES,
        cache_key=lambda ctx: (_tf_version(ctx), ctx.calibration_key()),
        kernel_isa=int8_dispatch,
    )
)
register(
    Variant(
        name="tflite-int16x8",
        description="16x8 post-training quantization: int16 activations and I/O, int8 weights, same calibration",
        suffix=".tflite",
        build=_build_integer("int16"),
        load=load_litert("tflite-int16x8"),
        runtime_modules=LITERT_MODULES,
        cache_key=lambda ctx: (_tf_version(ctx), ctx.calibration_key()),
        kernel_isa=fixed("scalar C (LiteRT reference kernels: XNNPACK takes no 16-bit activations)"),
    )
)
