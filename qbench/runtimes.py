"""Runners: one object per variant that turns float model input into float scores.

``predict(x)`` is the end-to-end single-image path a user would call (input
quantization and output dequantization included for the int8 variants) and is
what the latency benchmarks time, for every variant alike.  The native
baseline is a graph-mode ``tf.function`` concrete function, not Keras
``predict()``, whose per-call overhead would inflate every speed-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qbench.datasets import to_model_input
from qbench.errors import QBenchError
from qbench.quant import QParams, dequantize, quantize


class Runner:
    variant: str = "?"
    input_shape: tuple[int, ...] = ()
    input_qparams: QParams | None = None
    output_qparams: QParams | None = None

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape) != tuple(self.input_shape):
            raise QBenchError(
                f"{self.variant}: input shape {tuple(x.shape)} does not match the model input {tuple(self.input_shape)}"
            )
        return x

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        q = self.input_qparams
        return x if q is None else quantize(x, q.scale, q.zero_point, q.dtype)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        q = self.output_qparams
        return raw.astype(np.float32) if q is None else dequantize(raw, q.scale, q.zero_point)

    def invoke(self, prepared) -> np.ndarray:  # raw output
        raise NotImplementedError

    def prepare(self, x: np.ndarray):
        return self.quantize_input(self._check(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One float input (1, H, W, 3) -> float scores (1, classes)."""
        return self.dequantize_output(self.invoke(self.prepare(x)))

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.predict(x[i : i + 1]) for i in range(len(x))])

    def predict_images(self, images: np.ndarray, preprocess: str) -> np.ndarray:
        return self.predict_many(to_model_input(images, preprocess))

    def close(self) -> None:
        pass


class NativeRunner(Runner):
    """TensorFlow graph mode (``tf.function`` concrete function)."""

    variant = "native"

    def __init__(self, model_path: Path):
        import tensorflow as tf

        from qbench.model import load_keras_model, model_io_shape

        self.model = load_keras_model(Path(model_path))
        size, _ = model_io_shape(self.model)
        self.input_shape = (1, size, size, 3)
        model = self.model
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._fn = fn.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))
        self._tf = tf

    def prepare(self, x):
        return self._tf.constant(self._check(x))

    def invoke(self, prepared):
        return self._fn(prepared).numpy()

    def predict_many(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape[1:]:
            raise QBenchError(f"native: input shape {x.shape[1:]} does not match the model input {self.input_shape[1:]}")
        return np.concatenate([self._fn(self._tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


class LiteRTRunner(Runner):
    """LiteRT interpreter (``ai_edge_litert``), default XNNPACK delegate."""

    def __init__(self, model_path: Path, variant: str, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.variant = variant
        try:
            self.interp = Interpreter(model_path=str(model_path), num_threads=threads)
            self.interp.allocate_tensors()
        except Exception as exc:
            raise QBenchError(f"{variant}: LiteRT cannot load {model_path}: {str(exc).strip().splitlines()[0][:200]}") from None
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


class TVMRunner(Runner):
    """Relax VM running the exported .so; quantization params from the sidecar JSON."""

    variant = "tvm-avx2-int8"

    def __init__(self, so_path: Path, meta: dict | None = None):
        import tvm
        from tvm import relax

        so_path = Path(so_path)
        if meta is None:
            meta_path = so_path.with_suffix(so_path.suffix + ".json")
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise QBenchError(f"tvm-avx2-int8: metadata {meta_path} missing or unreadable ({exc})") from None
        try:
            lib = tvm.runtime.load_module(str(so_path))
            self.vm = relax.VirtualMachine(lib, tvm.cpu())
            self._fn = self.vm["main"]
        except Exception as exc:
            raise QBenchError(f"tvm-avx2-int8: cannot load {so_path}: {str(exc).strip().splitlines()[0][:200]}") from None
        self._tvm = tvm
        self._dev = tvm.cpu()
        inp, out = meta["input"], meta["output"]
        self.input_shape = tuple(inp["shape"])
        self._in_dtype = np.dtype(inp["dtype"])
        self.input_qparams = QParams(**inp["quant"]) if inp.get("quant") else None
        self.output_qparams = QParams(**out["quant"]) if out.get("quant") else None

    def prepare(self, x):
        q = self.quantize_input(self._check(x)).astype(self._in_dtype, copy=False)
        return self._tvm.runtime.tensor(q, self._dev)

    def invoke(self, prepared):
        out = self._fn(prepared)
        if not hasattr(out, "numpy"):
            out = out[0]
        return out.numpy()

    def invoke_raw(self, q: np.ndarray) -> np.ndarray:
        """Run an already-quantized input (for int8 agreement tests)."""
        return self.invoke(self._tvm.runtime.tensor(np.ascontiguousarray(q, dtype=self._in_dtype), self._dev))


def make_runner(variant: str, path: Path, threads: int, meta: dict | None = None) -> Runner:
    if variant == "native":
        return NativeRunner(path)
    if variant in ("tflite-fp32", "tflite-int8"):
        return LiteRTRunner(path, variant, threads)
    if variant == "tvm-avx2-int8":
        return TVMRunner(path, meta)
    raise QBenchError(f"unknown variant {variant!r}")
