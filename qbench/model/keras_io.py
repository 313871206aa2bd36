"""Loading a Keras classifier for inference, with one-line errors and a shape check.

Shared by the model cache (:mod:`qbench.model.under_test`) and the ``native`` backend,
which must not import the training code.  :func:`io_shape_from_config` reads the
shapes a ``.keras`` archive states without importing Keras, so that the pytest
process of a run on a user's model does not import TensorFlow (5-6 s a run) only
to check them; the workers load the model.
"""

from __future__ import annotations

import json
import zipfile
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
    return _classifier_shape(tuple(inputs[0].shape), tuple(outputs[0].shape))


def _classifier_shape(in_shape: tuple, out_shape: tuple) -> tuple[int, int]:
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[1] != in_shape[2]:
        raise QBenchError(f"model input must be square RGB images (batch, N, N, 3), got {in_shape}")
    if len(out_shape) != 2 or out_shape[1] is None:
        raise QBenchError(f"model output must be class scores (batch, classes), got {out_shape}")
    return int(in_shape[1]), int(out_shape[1])


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def io_shape_from_config(path: Path) -> tuple[int, int] | None:
    """(image_size, num_classes) as a ``.keras`` archive's config.json states them, without importing Keras.

    Only for what the config says outright: a functional model with one input
    layer (its ``batch_shape``) and one output layer that is a ``Dense`` on flat
    features (its ``units``), beside a weights file that is HDF5.  Anything else
    (``.h5`` files, other output layers, a damaged archive): ``None``, and the
    caller loads the model, which also gives the one-line error a damaged file
    deserves.  Shapes the config states but the model cannot have raise the
    same errors :func:`model_io_shape` does.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            with archive.open("model.weights.h5") as weights:
                if weights.read(len(_HDF5_MAGIC)) != _HDF5_MAGIC:
                    return None
        if config["class_name"] != "Functional":
            return None
        graph = config["config"]
        layers = {layer["name"]: layer for layer in graph["layers"]}
        ends = [_one_end(graph["input_layers"]), _one_end(graph["output_layers"])]
        if None in ends:
            return None
        first, last = layers[ends[0]], layers[ends[1]]
        if first["class_name"] != "InputLayer" or last["class_name"] != "Dense":
            return None
        features = last["build_config"]["input_shape"]
        if len(features) != 2:
            return None
        in_shape, out_shape = tuple(first["config"]["batch_shape"]), (features[0], int(last["config"]["units"]))
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile, RuntimeError):
        return None
    return _classifier_shape(in_shape, out_shape)


def _one_end(spec) -> str | None:
    """The layer name of a functional config's ``input_layers`` / ``output_layers`` when it names one layer."""
    if isinstance(spec, list) and len(spec) == 1 and isinstance(spec[0], list):
        spec = spec[0]
    if isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str):
        return spec[0]
    return None
