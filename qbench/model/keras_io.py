"""Loading a Keras classifier for inference, with one-line errors and a shape check.

Shared by the model cache (:mod:`qbench.model.under_test`) and the ``native`` backend,
which must not import the training code.
"""

from __future__ import annotations

from pathlib import Path

from qbench.core.errors import QBenchError, one_line


def load_keras_model(path: Path, what: str = "model file"):
    """Load a .keras/.h5 model for inference; corrupt files become one-line errors."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for bad files
        raise QBenchError(f"{what} {path} could not be loaded ({type(exc).__name__}: {one_line(exc)})") from None


def model_io_shape(model) -> tuple[int, int]:
    """(image_size, num_classes) of a classifier; errors on anything else."""
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise QBenchError(f"model must have one input and one output, got {len(inputs)} and {len(outputs)}")
    in_shape = tuple(inputs[0].shape)
    out_shape = tuple(outputs[0].shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[1] != in_shape[2]:
        raise QBenchError(f"model input must be square RGB images (batch, N, N, 3), got {in_shape}")
    if len(out_shape) != 2 or out_shape[1] is None:
        raise QBenchError(f"model output must be class scores (batch, classes), got {out_shape}")
    return int(in_shape[1]), int(out_shape[1])
