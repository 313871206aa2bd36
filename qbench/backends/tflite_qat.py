"""``tflite-int8-qat``: quantization-aware training (tensorflow-model-optimization), then full-integer TFLite.

tfmot only wraps tf-keras (Keras 2) models, so the reference model is first
rebuilt in tf-keras (:mod:`qbench.model.tf_keras_bridge`, checked against the
original).  Every layer but the input ``Rescaling`` (which tfmot does not
support) is annotated, so tfmot's transforms fold each Conv/BatchNorm/ReLU
group as TFLite will; the model is then fine-tuned on the train split with
fake quantization (``Profile.qat_epochs`` epochs, Adam 1e-4, batch 32) and
converted like ``tflite-int8``: int8 kernels, int8 input and output, and the
same train-split calibration samples for anything the training did not
range (the rescale).  Nothing from the test split is seen.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from qbench.backends import register
from qbench.backends.base import Variant
from qbench.backends.kernels import int8_dispatch
from qbench.backends.tflite import LITERT_MODULES, convert_tflite_integer, load_litert, tflite_io_params

LEARNING_RATE = 1e-4
BATCH_SIZE = 32


def quantization_aware_model(model, train_x, train_y, epochs: int, seed: int, progress):
    """``model`` (Keras 3) as a tf-keras model with fake quantization, fine-tuned on (train_x, train_y)."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from qbench.model.tf_keras_bridge import to_tf_keras

    flat = to_tf_keras(model, train_x[:8])
    quantize = tfmot.quantization.keras

    def annotate(layer):
        return layer if isinstance(layer, tf_keras.layers.Rescaling) else quantize.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(flat, clone_function=annotate)
    annotated.set_weights(flat.get_weights())
    with quantize.quantize_scope():
        qat = quantize.quantize_apply(annotated)
    tf.keras.utils.set_random_seed(seed)
    qat.compile(tf_keras.optimizers.Adam(LEARNING_RATE), "sparse_categorical_crossentropy", metrics=["accuracy"])

    class Progress(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress(f"QAT epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f}, train accuracy {logs['accuracy']:.4f}")

    qat.fit(train_x, train_y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0, callbacks=[Progress()])
    return qat


def build_qat(ctx, out: Path) -> dict:
    train_x, train_y = ctx.train_inputs()
    epochs = ctx.settings.profile.qat_epochs
    ctx.progress(f"quantization-aware training: {epochs} epoch(s) on {len(train_x)} train-split images")
    model = quantization_aware_model(ctx.keras_model(), train_x, train_y, epochs, ctx.settings.seed, ctx.progress)
    calib = ctx.calibration_inputs()
    out.write_bytes(convert_tflite_integer(model, calib))
    return {
        **tflite_io_params(out),
        "calibration_samples": int(len(calib)),
        "calibration_split": "train",
        "qat_epochs": epochs,
        "qat_train_images": int(len(train_x)),
    }


register(
    Variant(
        name="tflite-int8-qat",
        description=(
            "quantization-aware training (tfmot, fake-quantized fine-tuning on the train split), "
            "then full-integer int8 like tflite-int8"
        ),
        suffix=".tflite",
        build=build_qat,
        load=load_litert("tflite-int8-qat"),
        runtime_modules=LITERT_MODULES,
        cache_key=lambda ctx: (
            version("tensorflow"),
            version("tensorflow-model-optimization"),
            version("tf-keras"),
            ctx.train_key(),
            ctx.calibration_key(),
            ctx.settings.profile.qat_epochs,
            LEARNING_RATE,
            BATCH_SIZE,
            "traced-call conversion",  # qbench.backends.tflite._converter: not through a SavedModel
        ),
        kernel_isa=int8_dispatch,
    )
)
