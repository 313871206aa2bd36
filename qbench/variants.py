"""Building the four variants from a Keras model (each cached, atomically written).

* ``native``        - the Keras model re-saved without optimizer state (.keras)
* ``tflite-fp32``   - TFLiteConverter, no optimizations
* ``tflite-int8``   - full-integer post-training quantization (int8 in/out),
                      calibrated on train-split samples only
* ``tvm-avx2-int8`` - Apache TVM (Relax) compiling the int8 .tflite for
                      ``{"kind": "llvm", "mcpu": "core-avx2"}``, exported as .so
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qbench.errors import QBenchError
from qbench.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, stable_hash
from qbench.quant import QParams

Progress = Callable[[str], None]

TVM_MCPU = "core-avx2"


@dataclass
class Artifact:
    variant: str
    path: Path
    size_bytes: int
    build_seconds: float | None
    cached: bool
    meta: dict


def _quiet(_m: str) -> None:
    pass


@contextlib.contextmanager
def _silence_stdout():
    """TFLiteConverter prints the whole SavedModel signature; keep the terminal readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def tvm_target_spec(threads: int) -> dict:
    return {"kind": "llvm", "mcpu": TVM_MCPU, "num-cores": int(threads)}


def _artifact(variant: str, path: Path, seconds: float | None, cached: bool, meta: dict | None = None) -> Artifact:
    return Artifact(variant, path, path.stat().st_size, seconds, cached, meta or {})


def build_native(model_path: Path, out: Path) -> float:
    from qbench.model import load_keras_model

    t0 = time.perf_counter()
    model = load_keras_model(model_path)
    with atomic_path(out) as tmp:
        model.save(tmp)
    return time.perf_counter() - t0


def convert_tflite_fp32(model) -> bytes:
    import tensorflow as tf

    with _silence_stdout():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        return converter.convert()


def convert_tflite_int8(model, calibration: np.ndarray) -> bytes:
    """Full-integer PTQ: int8 kernels only, int8 input and output tensors.

    ``calibration`` is float model input (already preprocessed) from the train split.
    """
    import tensorflow as tf

    if len(calibration) == 0:
        raise QBenchError("no calibration samples: cannot quantize to int8")
    calibration = np.asarray(calibration, dtype=np.float32)

    def representative_dataset():
        for sample in calibration:
            yield [sample[None, ...]]

    with _silence_stdout():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return converter.convert()


def tflite_io_params(path_or_buf) -> dict:
    """Input/output shape, dtype and quantization of a .tflite model, via LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": path_or_buf} if isinstance(path_or_buf, (bytes, bytearray)) else {"model_path": str(path_or_buf)}
    try:
        interp = Interpreter(**kwargs)
    except Exception as exc:
        raise QBenchError(f"LiteRT cannot load the model: {str(exc).strip().splitlines()[0][:200]}") from None
    (inp,) = interp.get_input_details()
    (out,) = interp.get_output_details()

    def info(d):
        q = QParams.from_details(d)
        return {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quant": q.to_json() if q else None,
        }

    return {"input": info(inp), "output": info(out)}


def compile_tvm(int8_tflite: bytes, out_so: Path, threads: int) -> dict:
    """Relax TFLite frontend -> tvm.compile for AVX2 -> export_library(.so). Returns metadata."""
    import tflite
    import tvm
    import tvm.relax.frontend.tflite as tvm_tflite

    from qbench.tflite_model import parse_model

    parse_model(int8_tflite, "int8 TFLite model")
    try:
        mod = tvm_tflite.from_tflite(tflite.Model.GetRootAsModel(int8_tflite, 0))
    except Exception as exc:
        raise QBenchError(
            f"TVM's TFLite frontend rejected the int8 model: {type(exc).__name__}: {str(exc).strip()[:300]}"
        ) from None
    target = tvm.target.Target(tvm_target_spec(threads))
    executable = tvm.compile(mod, target=target)
    with atomic_path(out_so, suffix=".so") as tmp:
        executable.export_library(str(tmp))
    return {"target": tvm_target_spec(threads), "tvm_target": str(target), "tvm_version": tvm.__version__}


class VariantBuilder:
    """Builds (or reuses from ``build/``) each variant's artifact for one model."""

    def __init__(self, model_info, dataset, settings, progress: Progress = _quiet):
        self.model_info = model_info
        self.dataset = dataset
        self.settings = settings
        self.progress = progress
        self.dir = settings.build_dir / "variants" / model_info.key
        self._model = None

    # -- keys ---------------------------------------------------------------
    def calibration_key(self) -> str:
        import tensorflow as tf

        idx = self.dataset.calibration_indices(self.settings.n_calibration, self.settings.seed + 1)
        return stable_hash(
            "calib", self.dataset.fingerprint(), idx.astype(np.int64).tobytes(), self.model_info.preprocess, tf.__version__
        )

    def path_for(self, variant: str) -> Path:
        if variant == "native":
            return self.dir / "native.keras"
        if variant == "tflite-fp32":
            import tensorflow as tf

            return self.dir / f"tflite-fp32-{stable_hash(tf.__version__, length=8)}.tflite"
        if variant == "tflite-int8":
            return self.dir / f"tflite-int8-{self.calibration_key()}.tflite"
        if variant == "tvm-avx2-int8":
            import tvm

            tvm_key = stable_hash(tvm.__version__, tvm_target_spec(self.settings.threads), length=8)
            return self.dir / f"tvm-avx2-int8-{self.calibration_key()}-{tvm_key}.so"
        raise QBenchError(f"unknown variant {variant!r}")

    # -- helpers ------------------------------------------------------------
    def keras_model(self):
        if self._model is None:
            from qbench.model import load_keras_model

            self._model = load_keras_model(self.model_info.path)
        return self._model

    def calibration_inputs(self) -> np.ndarray:
        from qbench.datasets import to_model_input

        images = self.dataset.calibration_images(self.settings.n_calibration, self.settings.seed + 1)
        return to_model_input(images, self.model_info.preprocess)

    # -- build ---------------------------------------------------------------
    def build(self, variant: str, force: bool = False) -> Artifact:
        path = self.path_for(variant)
        meta_path = path.with_suffix(path.suffix + ".json")
        if path.is_file() and not force:
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            return _artifact(variant, path, meta.get("build_seconds"), True, meta)
        self.progress(f"building {variant} -> {path}")
        t0 = time.perf_counter()
        meta: dict = {"variant": variant}
        if variant == "native":
            build_native(self.model_info.path, path)
        elif variant == "tflite-fp32":
            atomic_write_bytes(path, convert_tflite_fp32(self.keras_model()))
            meta.update(tflite_io_params(path))
        elif variant == "tflite-int8":
            calib = self.calibration_inputs()
            self.progress(f"calibrating int8 quantization on {len(calib)} train-split samples")
            atomic_write_bytes(path, convert_tflite_int8(self.keras_model(), calib))
            meta.update(tflite_io_params(path))
            meta["calibration_samples"] = int(len(calib))
            meta["calibration_split"] = "train"
        elif variant == "tvm-avx2-int8":
            int8 = self.build("tflite-int8")
            meta.update(tflite_io_params(int8.path))
            meta.update(compile_tvm(int8.path.read_bytes(), path, self.settings.threads))
            meta["source"] = int8.path.name
        else:
            raise QBenchError(f"unknown variant {variant!r}")
        seconds = time.perf_counter() - t0
        meta["build_seconds"] = round(seconds, 3)
        atomic_write_json(meta_path, meta)
        self.progress(f"built {variant} in {seconds:.1f}s ({path.stat().st_size / 1024:.0f} KiB)")
        return _artifact(variant, path, seconds, False, meta)

    def discard(self, variant: str) -> None:
        path = self.path_for(variant)
        for p in (path, path.with_suffix(path.suffix + ".json")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
