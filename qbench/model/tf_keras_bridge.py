"""A Keras 3 functional model rebuilt, flattened, in tf-keras (Keras 2), weights and all.

tensorflow-model-optimization's quantization-aware training only wraps
tf-keras models, and neither loads the other's files (tf-keras rejects Keras
3's ``batch_shape``, ``DTypePolicy`` and node format).  So the graph is walked
from Keras 3's own config: each layer is re-created in tf-keras from its
config (dtype policies become dtype names; initializers, regularizers and
constraints are dropped, since the weights are copied), nested functional
models are inlined (tfmot cannot quantize a model inside a model), and each
layer's weights are copied by name.  :func:`to_tf_keras` checks the copy
against the original on sample inputs before anything trusts it.
"""

from __future__ import annotations

import numpy as np

from qbench.core.errors import QBenchError

# Config keys that only Keras 3 knows, or that only matter before the weights are copied.
_DROP = {"quantization_config", "synchronized", "optional", "lora_rank", "lora_alpha", "gamma_initializer"}
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_FUNCTIONAL = ("Functional", "Model", "Sequential")


def _clean(config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key in _DROP or key.endswith(_DROP_SUFFIXES):
            continue
        if key == "dtype" and isinstance(value, dict):
            value = value.get("config", {}).get("name", "float32")
        out[key] = value
    return out


def _resolve(arg, tensors):
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        name, node, index = arg["config"]["keras_history"]
        if node != 0:
            raise QBenchError(f"layer {name!r} is called more than once (shared layers are not supported for QAT)")
        return tensors[name][index]
    if isinstance(arg, (list, tuple)):
        return [_resolve(a, tensors) for a in arg]
    return arg


def _build(config: dict, inputs: list, tf_keras, created: dict) -> list:
    """Apply a functional ``config`` to ``inputs`` (tf-keras tensors); returns its outputs."""
    tensors: dict[str, list] = {}
    input_names = (
        [ref[0] for ref in config["input_layers"]] if isinstance(config["input_layers"][0], list) else [config["input_layers"][0]]
    )
    for name, tensor in zip(input_names, inputs, strict=True):
        tensors[name] = [tensor]
    for entry in config["layers"]:
        cls, name = entry["class_name"], entry["name"]
        if cls == "InputLayer":
            continue
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) != 1:
            raise QBenchError(f"layer {name!r} has {len(nodes)} call sites; QAT needs each layer called once")
        args = [_resolve(a, tensors) for a in nodes[0].get("args", [])]
        if cls in _FUNCTIONAL:
            flat = [t for a in args for t in (a if isinstance(a, list) else [a])]
            outs = _build(entry["config"], flat, tf_keras, created)
        else:
            layer_cls = getattr(tf_keras.layers, cls, None)
            if layer_cls is None:
                raise QBenchError(f"layer {name!r}: tf-keras has no {cls} layer, so the model cannot be trained for QAT")
            if name in created:
                raise QBenchError(f"two layers are named {name!r}; cannot match weights by name")
            layer = layer_cls.from_config(_clean(entry["config"]))
            created[name] = layer
            out = layer(*args)
            outs = out if isinstance(out, list) else [out]
        tensors[name] = outs
    refs = config["output_layers"]
    refs = refs if isinstance(refs[0], list) else [refs]
    return [tensors[name][index] for name, _node, index in refs]


def _keras3_layers(model, out: dict) -> dict:
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in _FUNCTIONAL:
            _keras3_layers(layer, out)
        else:
            out[layer.name] = layer
    return out


def to_tf_keras(model, sample: np.ndarray, atol: float = 1e-4):
    """``model`` (Keras 3, functional) as one flat tf-keras model with the same weights and outputs."""
    import tf_keras

    config = model.get_config()
    if "layers" not in config:
        raise QBenchError("QAT needs a functional Keras model")
    shape = tuple(model.inputs[0].shape[1:])
    inputs = tf_keras.Input(shape=shape, name=model.inputs[0].name.split(":")[0])
    created: dict = {}
    (output,) = _build(config, [inputs], tf_keras, created)
    flat = tf_keras.Model(inputs, output, name=f"{model.name}_tf_keras")
    originals = _keras3_layers(model, {})
    for name, layer in created.items():
        weights = originals[name].get_weights()
        if weights:
            layer.set_weights(weights)
    sample = np.asarray(sample, dtype=np.float32)
    diff = float(np.max(np.abs(flat(sample, training=False).numpy() - np.asarray(model(sample, training=False)))))
    if diff > atol:
        raise QBenchError(f"the tf-keras copy of the model differs from it by {diff:.2e} (allowed {atol:.0e})")
    return flat
