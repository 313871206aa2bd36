"""``openvino-int8-selective``: NNCF's int8 with the same K worst operators kept in float as ``tflite-int8-selective``.

Why: the selective sweep's ranking (TFLite's QuantizationDebugger on
train-split images, :mod:`qbench.backends.tflite_selective`) says which
operators int8 hurts; a user of OpenVINO asks the same question of NNCF,
whose ``ignored_scope`` keeps named nodes in float but picks none.  This
variant applies the TFLite ranking to NNCF: for each K of the sweep, the K
worst operators' OpenVINO nodes go into ``nncf.IgnoredScope(names=...)``,
everything else is quantized as ``openvino-int8`` is (same calibration
samples, preset, bias correction).

How names map: ``openvino.convert_model`` of a ``.tflite`` keeps no tensor
names (its nodes are ``Convolution_119`` ...), so an operator is found by
position: the i-th CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED of
``tflite-fp32`` is the i-th Convolution / GroupConvolution / MatMul of
``openvino-fp32`` (both in execution order), checked by the weights' output
channels and element count.  A ranked operator that is not one of those
(an ADD, a MEAN) has no node to ignore: the sidecar lists it under
``unmapped`` and the sweep's table says so.  Behind the ``[peers]`` extra.
"""

from __future__ import annotations

import math
from importlib.metadata import version
from pathlib import Path

from qbench.backends import register
from qbench.backends.base import Variant, requires_extra
from qbench.backends.kernels import int8_with_float
from qbench.backends.openvino_runtime import _load, _save_ir, quantize_openvino, read_ir
from qbench.backends.tflite_model import linear_ops
from qbench.core.errors import QBenchError
from qbench.core.machine import installed_versions

NAME = "openvino-int8-selective"
LINEAR_OPENVINO = ("Convolution", "GroupConvolution", "MatMul")


def openvino_linear_ops(model) -> list[tuple[str, str, tuple[int, ...]]]:
    """(type, friendly name, weight shape) of every Convolution / GroupConvolution / MatMul, in topological order."""
    out = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in LINEAR_OPENVINO:
            out.append((node.get_type_name(), node.get_friendly_name(), tuple(node.input(1).get_partial_shape().to_shape())))
    return out


def _same_weights(tfl: tuple[int, ...], ov: tuple[int, ...], depthwise: bool) -> bool:
    channels_tfl = tfl[-1] if depthwise else tfl[0]
    return channels_tfl == ov[0] and math.prod(tfl) == math.prod(ov)


def map_operators(tensors: list[str], tflite_ops: list, openvino_ops: list) -> tuple[dict[str, str], dict[str, str]]:
    """``tensors`` (ranked operators' output tensors) -> OpenVINO node names, and the ones with none -> why."""
    if len(tflite_ops) != len(openvino_ops) or not all(
        _same_weights(t[2], o[2], t[0] == "DEPTHWISE_CONV_2D") for t, o in zip(tflite_ops, openvino_ops, strict=False)
    ):
        why = f"the two graphs' conv/dense layers differ ({len(tflite_ops)} in tflite-fp32, {len(openvino_ops)} in openvino-fp32)"
        return {}, dict.fromkeys(tensors, why)
    position = {name: i for i, (_, name, _) in enumerate(tflite_ops)}
    mapped, unmapped = {}, {}
    for tensor in tensors:
        if tensor in position:
            mapped[tensor] = openvino_ops[position[tensor]][1]
        else:
            unmapped[tensor] = "not a conv or dense operator of tflite-fp32 (no OpenVINO node to ignore)"
    return mapped, unmapped


def build_selective(ctx, out: Path) -> dict:
    from qbench.backends.tflite_selective import ranked, ranking_record

    k = ctx.sweep_point
    if k is None:
        raise QBenchError(f"{NAME} is built for each K of the selective sweep (--qbench-selective-k), not on its own")
    _, ranking = ranked(ctx)
    tensors = [r["tensor"] for r in ranking[: int(k)]]
    fp32 = read_ir(ctx.artifact("openvino-fp32").path)
    tflite_ops = linear_ops(ctx.artifact("tflite-fp32").path.read_bytes())
    mapped, unmapped = map_operators(tensors, tflite_ops, openvino_linear_ops(fp32))
    ctx.progress(f"{NAME}: K={k}, {len(mapped)} of {len(tensors)} operators kept in float through NNCF's ignored_scope")
    _save_ir(quantize_openvino(ctx, fp32, sorted(mapped.values())), out)
    return {
        "selective_k": int(k),
        "float_operators": [t for t in tensors if t in mapped],
        "ignored_nodes": [mapped[t] for t in tensors if t in mapped],
        "unmapped": unmapped,
        "ranking": ranking_record(ranking),
        "ranking_from": "tflite-int8-selective (TFLite's QuantizationDebugger, train split)",
        "nncf_version": version("nncf"),
        "preset": "mixed",
        "bias_correction": "full",
    }


register(
    Variant(
        name=NAME,
        description=(
            "peer: NNCF int8 with the selective sweep's K worst operators (TFLite's ranking, train split) "
            "in nncf.IgnoredScope, kept in float"
        ),
        suffix=".ovzip",
        build=build_selective,
        load=_load(NAME),
        runtime_modules=("openvino",),
        derives_from="openvino-fp32",
        cache_key=lambda ctx: (
            tuple(installed_versions(("nncf", "tensorflow")).items()),
            ("mixed", "full-bias"),
            ctx.calibration_key(),
            ("k", ctx.sweep_point),
        ),
        unavailable=requires_extra(("openvino", "nncf"), "peers"),
        default=False,
        group="peers",
        swept=True,
        kernel_isa=lambda flags: f"{int8_with_float(flags)} (oneDNN)",
    )
)
