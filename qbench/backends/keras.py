"""The ``native`` variant: the Keras model run by TensorFlow in graph mode.

The baseline every ratio is relative to.  It is a concrete ``tf.function``,
not Keras ``predict()``, whose per-call overhead would inflate every
speed-up; ``predict()`` is still available on the runner (``keras_predict``)
so the inflation can be measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant
from qbench.backends.kernels import fixed, float_dispatch
from qbench.core.errors import QBenchError


def configure_tensorflow_threads(threads: int | None) -> None:
    """Intra/inter-op pools sized to ``threads`` (must run before TensorFlow executes anything)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # already initialized in this process: keep what it has
        pass


class NativeRunner(Runner):
    """TensorFlow graph mode (``tf.function`` concrete function)."""

    variant = "native"

    def __init__(self, model_path: Path, threads: int | None = None, variant: str = "native"):
        self.variant = variant
        configure_tensorflow_threads(threads)
        import tensorflow as tf

        from qbench.model.keras_io import load_keras_model, model_io_shape

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

    def invoke_raw(self, raw_input):
        return self.invoke(self._tf.constant(np.asarray(raw_input, np.float32)))

    def batch_runner(self, batch: int) -> Runner:
        """The same concrete function (its batch dimension is free), checked against ``batch`` images."""
        return self.reshaped_for(batch)

    def keras_predict(self, x):
        """What Kenning times as its native baseline (a reference, never a row)."""
        return self.model.predict(x, verbose=0)

    def predict_many(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape[1:]:
            raise QBenchError(f"native: input shape {x.shape[1:]} does not match the model input {self.input_shape[1:]}")
        return np.concatenate([self._fn(self._tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


def build_native(ctx, out: Path) -> dict:
    """The reference model re-saved without optimizer state (its size is the baseline size)."""
    ctx.keras_model().save(out)
    return {}


def _keras_versions(_ctx) -> tuple:
    from importlib.metadata import version

    return ("keras", version("keras"))


# TensorFlow's oneDNN custom ops are on by default on x86.  For one 64x64 image
# on 2 threads they are 3.5-4x slower than TensorFlow's own kernels and swing
# between processes: native p10 3.34-5.01 ms over 5 fresh processes with
# oneDNN, 1.18-1.23 ms over 4 without (standalone probe, development VM).  A
# slow, erratic baseline would inflate every speed-up and blind the latency
# gate, so `native` runs without them; `native-onednn` keeps TensorFlow's default.
register(
    Variant(
        name="native",
        description="the Keras model run by TensorFlow in graph mode (a concrete `tf.function`), oneDNN custom ops off",
        suffix=".keras",
        build=build_native,
        load=lambda path, meta, threads, **_: NativeRunner(path, threads),
        runtime_modules=("tensorflow", "keras"),
        cache_key=_keras_versions,
        kernel_isa=fixed("AVX (TensorFlow's Eigen kernels as the pip build compiled them)"),
        is_reference=True,
        lossless_tolerance=0.0,
        environment={"TF_ENABLE_ONEDNN_OPTS": "0"},
    )
)
register(
    Variant(
        name="native-onednn",
        description="native with TensorFlow's default oneDNN custom ops (what a plain `import tensorflow` gets on x86)",
        suffix=".keras",
        build=build_native,
        load=lambda path, meta, threads, **_: NativeRunner(path, threads, "native-onednn"),
        runtime_modules=("tensorflow", "keras"),
        cache_key=_keras_versions,
        lossless_tolerance=1e-4,
        default=False,
        environment={"TF_ENABLE_ONEDNN_OPTS": "1"},
        kernel_isa=lambda flags: f"{float_dispatch(flags)} (oneDNN JIT)",
    )
)
