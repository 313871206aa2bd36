"""What a variant is: the record the registry holds, and the runner every backend returns.

A backend module declares its variants as :class:`Variant` records and
registers them; nothing outside the backend modules looks at a variant's
name to decide how to build, load or run it.  A :class:`Runner` splits one
inference into phases (``prepare``: float image -> runtime input,
``invoke``: the runtime alone, ``finish``: raw output -> float scores), so the
runtime can be timed apart from the harness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbench.backends.quant import QParams, Quantizer, dequantize
from qbench.core.errors import QBenchError

REFERENCE_MODEL = "reference model"


class Runner:
    """One loaded variant: float model input in, float class scores out."""

    variant: str = "?"
    input_shape: tuple[int, ...] = ()
    input_qparams: QParams | None = None
    output_qparams: QParams | None = None
    # float scores quantized inside the graph (an ONNX QDQ softmax) lie on a grid of this step
    score_step: float | None = None

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
        """Spec quantization (:class:`qbench.backends.quant.Quantizer`, buffers kept per input shape)."""
        q = self.input_qparams
        if q is None:
            return x
        quantizer = getattr(self, "_quantizer", None)
        if quantizer is None or quantizer.shape != x.shape:
            quantizer = self._quantizer = Quantizer(x.shape, q.scale, q.zero_point, q.dtype)
        return quantizer(x)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        q = self.output_qparams
        return np.asarray(raw).astype(np.float32) if q is None else dequantize(raw, q.scale, q.zero_point)

    def prepare(self, x: np.ndarray):
        """Float image (1, H, W, 3) -> the runtime's input (quantized for integer models)."""
        return self.quantize_input(self._check(x))

    def invoke(self, prepared) -> np.ndarray:
        """The runtime alone: prepared input -> raw output (int8 for integer models)."""
        raise NotImplementedError

    def invoke_raw(self, raw_input: np.ndarray) -> np.ndarray:
        """Run an input already in the runtime's dtype (a numpy array), e.g. int8 for agreement checks."""
        return self.invoke(raw_input)

    def invoke_many(self, raw_inputs: np.ndarray) -> np.ndarray:
        """``invoke_raw`` over the first axis: (N, 1, H, W, 3) -> (N, classes) raw outputs."""
        return np.stack([self.invoke_raw(q)[0] for q in raw_inputs])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """End to end: one float input (1, H, W, 3) -> float scores (1, classes)."""
        return self.dequantize_output(self.invoke(self.prepare(x)))

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.predict(x[i : i + 1]) for i in range(len(x))])

    def batch_runner(self, batch: int) -> Runner | None:
        """A runner of the same artifact taking ``batch`` images a call (input (batch, H, W, 3)), or ``None``
        when the runtime runs one image a call only (a TVM module compiled for a static batch of 1).

        Throughput (:mod:`qbench.measure.throughput`) times its ``prepare``/``invoke``/``finish`` as
        latency times a single image's; a runtime that takes a batch overrides this.
        """
        return self if batch == 1 else None

    def reshaped_for(self, batch: int) -> Runner:
        """A shallow copy checked against ``batch`` images: for a runtime whose loaded model already takes any batch."""
        import copy

        runner = copy.copy(self)
        runner.input_shape = (int(batch), *self.input_shape[1:])
        return runner

    def describe(self) -> dict:
        """What the parent process needs to know about a runner living in a worker."""
        return {
            "variant": self.variant,
            "input_shape": tuple(self.input_shape),
            "input_qparams": self.input_qparams,
            "output_qparams": self.output_qparams,
            "score_step": self.score_step,
        }

    def close(self) -> None:
        pass


# build(ctx, out_path) writes the artifact to ``out_path`` (a temporary name the
# builder renames into place) and returns metadata for the artifact's sidecar.
BuildFn = Callable[[Any, Path], "dict | None"]
# load(path, meta, threads, **options) -> Runner, called in the process that runs it.
LoadFn = Callable[..., Runner]


def _no_key(_ctx) -> tuple:
    return ()


def _always(_threads: int | None = None) -> None:
    return None


@dataclass(frozen=True)
class Variant:
    """A registered variant.

    ``derives_from`` names what ``build`` starts from: the reference model, or
    another variant whose artifact it consumes (``ctx.artifact(name)``).
    ``cache_key(ctx)`` lists what else decides the artifact's bytes (library
    versions, calibration data); the artifact is rebuilt when it changes.
    ``unavailable()`` says why the variant cannot run on this machine (or
    ``None``).  ``lossless_tolerance`` is the largest score difference from
    the reference allowed for a variant that should not change predictions
    (``None`` for quantized variants).  ``default`` variants are part of
    "all"; others (peers, test-only variants) are selected by name.
    ``environment`` is set in the variant's worker process before anything
    is imported there (runtime switches that only work at start-up).
    ``timing_only`` marks what is timed in every run but is not a model
    (the harness floor): never selected, evaluated or gated.
    ``runtime_modules`` are what ``load`` imports (TensorFlow, LiteRT, TVM):
    a cost measurement (:mod:`qbench.measure.costs`) imports them first, so
    their memory and time are the worker's baseline, not the variant's.
    ``target_specific`` marks an artifact compiled for a CPU (TVM's ``.so``):
    a fleet run (:mod:`qbench.fleet`) builds it on each machine and never
    ships the driver's.  ``swept`` marks a variant built at several points
    of a parameter (``ctx.sweep_point``, set by ``ctx.at_point``): a sweep
    (:mod:`qbench.measure.selective`) measures them all and its choice is the row.
    """

    name: str
    description: str
    suffix: str
    build: BuildFn
    load: LoadFn
    derives_from: str = REFERENCE_MODEL
    cache_key: Callable[[Any], object] = _no_key
    unavailable: Callable[[], str | None] = _always
    lossless_tolerance: float | None = None
    is_reference: bool = False
    default: bool = True
    group: str | None = None  # a name that selects several variants at once (``--qbench-variants all,peers``)
    timing_only: bool = False
    target_specific: bool = False
    swept: bool = False
    kernel_isa: Callable[[frozenset], str] | None = None  # the widest ISA its kernels use here (qbench.backends.kernels)
    runtime_modules: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, compare=False)
    origin: str = field(default="", compare=False)  # importable module that registers it (set by register())

    @property
    def derived_from_variant(self) -> str | None:
        return None if self.derives_from == REFERENCE_MODEL else self.derives_from


def requires_extra(modules: tuple[str, ...], extra: str) -> Callable[[], str | None]:
    """A ``Variant.unavailable`` for a backend installed by ``extra``."""
    return lambda: missing_extra(modules, extra)


def missing_extra(modules: tuple[str, ...], extra: str) -> str | None:
    """``Variant.unavailable`` for optional backends: one line naming the extra that installs them."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"needs the [{extra}] extra ({', '.join(missing)} not installed): pip install -e .[{extra}]"
