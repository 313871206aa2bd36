"""Per-layer quantization error: each activation of a quantized ``.tflite`` against the float model's.

Both models are run by LiteRT with ``experimental_preserve_all_tensors`` and
without the XNNPACK delegate (a delegated graph keeps only its outputs), on the
same test images.  Every operator output of the quantized model is paired
with the float model's operator output of the same name and shape (the
converter names tensors after the Keras layers in both), dequantized, and
compared: SNR = 10 log10(sum f^2 / sum (f - q)^2) over all images, and the
largest absolute difference.  The quantized model's input is quantized by
the spec (:class:`qbench.backends.quant.Quantizer`), as every run does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbench.backends.quant import QParams, Quantizer, dequantize
from qbench.backends.tflite_model import op_outputs

FLOAT_VARIANT = "tflite-fp32"  # what every quantized activation is compared with
STUDIED = ("tflite-int8", "tflite-int16x8")  # the full-integer variants the report breaks down per layer
IMAGES = 32  # test images per comparison


def _interpreter(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


def paired_tensors(float_path: Path, quant_path: Path) -> list[tuple[int, int, str, str]]:
    """(float index, quantized index, name, op) of the activations both models compute."""
    floats = {}
    for index, name, _op in op_outputs(Path(float_path).read_bytes()):
        floats.setdefault(name, index)
    return [(floats[name], q, name, op) for q, name, op in op_outputs(Path(quant_path).read_bytes()) if name in floats]


def layer_errors(float_path: Path, quant_path: Path, images: np.ndarray, threads: int = 1) -> list[dict]:
    """One row per paired activation, in execution order: tensor, op, SNR [dB], max abs error, scale."""
    f_int, q_int = _interpreter(float_path, threads), _interpreter(quant_path, threads)
    (f_in,), (q_in,) = f_int.get_input_details(), q_int.get_input_details()
    q_details = {d["index"]: d for d in q_int.get_tensor_details()}
    f_details = {d["index"]: d for d in f_int.get_tensor_details()}
    pairs = [
        p
        for p in paired_tensors(float_path, quant_path)
        if tuple(f_details[p[0]]["shape"]) == tuple(q_details[p[1]]["shape"]) and f_details[p[0]]["dtype"] == np.float32
    ]
    qparams = [QParams.from_details(q_details[qi]) for _fi, qi, _name, _op in pairs]
    in_q = QParams.from_details(q_in)
    quantize = Quantizer((1, *images.shape[1:]), in_q.scale, in_q.zero_point, in_q.dtype) if in_q else None
    signal = np.zeros(len(pairs))
    noise = np.zeros(len(pairs))
    worst = np.zeros(len(pairs))
    for image in np.asarray(images, dtype=np.float32):
        x = image[None]
        f_int.set_tensor(f_in["index"], x)
        q_int.set_tensor(q_in["index"], quantize(x) if quantize else x)
        f_int.invoke()
        q_int.invoke()
        for k, ((fi, qi, _name, _op), qp) in enumerate(zip(pairs, qparams, strict=True)):
            ref = f_int.get_tensor(fi).astype(np.float64)
            raw = q_int.get_tensor(qi)
            got = dequantize(raw, qp.scale, qp.zero_point).astype(np.float64) if qp else raw.astype(np.float64)
            diff = ref - got
            signal[k] += float(np.sum(ref * ref))
            noise[k] += float(np.sum(diff * diff))
            worst[k] = max(worst[k], float(np.max(np.abs(diff))))
    rows = []
    for k, ((_fi, qi, name, op), qp) in enumerate(zip(pairs, qparams, strict=True)):
        snr = 10 * np.log10(signal[k] / noise[k]) if noise[k] > 0 and signal[k] > 0 else (np.inf if noise[k] == 0 else -np.inf)
        rows.append(
            {
                "tensor": name,
                "op": op,
                "dtype": np.dtype(q_details[qi]["dtype"]).name,
                "scale": None if qp is None else qp.scale,
                "snr_db": float(snr),
                "max_abs_error": worst[k],
            }
        )
    return rows


def layer_label(name: str) -> str:
    """A readable tensor name: the first of the converter's fused names, without the repeated model scope."""
    first = name.split(";")[0]
    parts = first.split("/")
    while len(parts) > 2 and parts[0] == parts[1]:
        parts = parts[1:]
    return "/".join(parts[1:]) if len(parts) > 1 else first


def worst_layers(rows: list[dict], n: int = 10) -> list[dict]:
    return sorted(rows, key=lambda r: r["snr_db"])[:n]


def render_markdown(variant: str, rows: list[dict], n: int = 10) -> str:
    lines = [
        f"| {variant}: tensor (lowest SNR first) | op | SNR [dB] | max abs error |",
        "|---|---|---:|---:|",
    ]
    for r in worst_layers(rows, n):
        lines.append(f"| `{layer_label(r['tensor'])}` | {r['op']} | {r['snr_db']:.1f} | {r['max_abs_error']:.4g} |")
    return "\n".join(lines) + "\n"
