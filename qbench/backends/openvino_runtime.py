"""OpenVINO peers: the same model as users would run it on an x86 CPU with Intel's runtime.

* ``openvino-fp32`` - ``openvino.convert_model`` of the ``tflite-fp32`` artifact (same graph,
                      no TensorFlow re-export), compiled for the CPU with f32 inference precision
* ``openvino-int8`` - NNCF post-training quantization (``nncf.quantize``) of that model on the
                      same train-split calibration samples as ``tflite-int8``, with the ``MIXED``
                      preset (asymmetric activations, symmetric per-channel weights: TFLite's int8
                      scheme) and full bias correction

Both are compiled with ``INFERENCE_PRECISION_HINT=f32``: on a CPU with
AVX512-BF16 (the development VM) OpenVINO otherwise runs float parts in
bfloat16, which cost the fp32 model 0.56 pp of accuracy on the default model
(0.9443 vs 0.9499).  NNCF's default preset (symmetric activations, fast bias
correction) reached 0.9192 there, 2.2 pp under TFLite int8; the preset and
full bias correction above reach 0.9359 (one probe each, development VM).

Both take the float image and return float scores (OpenVINO quantizes inside
the graph), so their invoke and end-to-end times differ only by the harness.
The IR (``model.xml`` + ``model.bin``) is stored as one uncompressed zip so an
artifact stays one file.  Installed by the ``[peers]`` extra; off by default.
"""

from __future__ import annotations

import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant, requires_extra
from qbench.backends.kernels import float_dispatch, int8_dispatch
from qbench.core.errors import QBenchError, one_line
from qbench.core.machine import installed_versions

# Both peers run their float parts in f32, like every other variant (see above).
PRECISION = "f32"


def _save_ir(model, out: Path) -> None:
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(model, f"{tmp}/model.xml", compress_to_fp16=False)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            zf.write(f"{tmp}/model.xml", "model.xml")
            zf.write(f"{tmp}/model.bin", "model.bin")


def read_ir(path: Path):
    import openvino as ov

    try:
        with zipfile.ZipFile(path) as zf:
            xml, weights = zf.read("model.xml"), zf.read("model.bin")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise QBenchError(f"OpenVINO model {path} is unreadable ({exc})") from None
    return ov.Core().read_model(xml.decode(), ov.Tensor(np.frombuffer(weights, np.uint8).copy()))


def build_fp32(ctx, out: Path) -> dict:
    import openvino as ov

    source = ctx.artifact("tflite-fp32").path
    model = ov.convert_model(str(source))
    size = ctx.dataset.image_size
    model.reshape([1, size, size, 3])
    _save_ir(model, out)
    return {"source": source.name, "openvino_version": version("openvino")}


def quantize_openvino(ctx, model, ignored: list[str] = ()):
    """NNCF post-training int8 of ``model`` on the train-split calibration samples (``MIXED`` preset, full bias
    correction); the nodes named in ``ignored`` stay in float (``nncf.IgnoredScope``)."""
    import nncf

    calib = ctx.calibration_inputs()
    ctx.progress(f"NNCF post-training quantization on {len(calib)} train-split samples")
    return nncf.quantize(
        model,
        nncf.Dataset([c[None] for c in calib]),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calib),
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored else None,
    )


def build_int8(ctx, out: Path) -> dict:
    _save_ir(quantize_openvino(ctx, read_ir(ctx.artifact("openvino-fp32").path)), out)
    return {
        "calibration_samples": int(len(ctx.calibration_indices())),
        "calibration_split": "train",
        "nncf_version": version("nncf"),
        "preset": "mixed",
        "bias_correction": "full",
    }


class OpenVINORunner(Runner):
    """A compiled OpenVINO model on the CPU, one infer request, ``INFERENCE_NUM_THREADS`` = threads."""

    def __init__(self, path: Path, variant: str, threads: int | None, batch: int | None = None):
        import openvino as ov

        self.variant = variant
        self._args = (path, variant, threads)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = read_ir(path)
            if batch is not None:
                model.reshape([int(batch), *(int(d) for d in model.input(0).get_shape()[1:])])
            self.compiled = ov.Core().compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise QBenchError(f"{variant}: OpenVINO cannot compile {path}: {one_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(int(d) for d in self.compiled.input(0).get_shape())

    def invoke(self, prepared):
        self.request.infer({0: prepared}, share_inputs=True)
        return self.request.get_output_tensor(0).data.copy()

    def batch_runner(self, batch: int) -> Runner:
        """The model reshaped to ``batch`` images and compiled again (OpenVINO compiles for static shapes)."""
        return self if batch == self.input_shape[0] else OpenVINORunner(*self._args, batch=batch)


def _load(name: str):
    def load(path, meta, threads, **_):
        return OpenVINORunner(Path(path), name, threads)

    return load


register(
    Variant(
        name="openvino-fp32",
        description="peer: OpenVINO CPU runtime, the tflite-fp32 model converted by `openvino.convert_model`, f32 precision",
        suffix=".ovzip",
        build=build_fp32,
        load=_load("openvino-fp32"),
        runtime_modules=("openvino",),
        derives_from="tflite-fp32",
        cache_key=lambda _ctx: tuple(installed_versions(("openvino",)).items()),
        unavailable=requires_extra(("openvino",), "peers"),
        lossless_tolerance=1e-3,
        default=False,
        group="peers",
        kernel_isa=lambda flags: f"{float_dispatch(flags)} (oneDNN)",
    )
)
register(
    Variant(
        name="openvino-int8",
        description="peer: OpenVINO CPU runtime, NNCF post-training int8 quantization on the train-split calibration samples",
        suffix=".ovzip",
        build=build_int8,
        load=_load("openvino-int8"),
        runtime_modules=("openvino",),
        derives_from="openvino-fp32",
        cache_key=lambda ctx: (
            tuple(installed_versions(("nncf",)).items()),
            ("mixed", "full-bias"),
            ctx.calibration_key(),
        ),
        unavailable=requires_extra(("openvino", "nncf"), "peers"),
        default=False,
        group="peers",
        kernel_isa=lambda flags: f"{int8_dispatch(flags)} (oneDNN)",
    )
)
