"""Variant builders and runners on a tiny CNN (seconds, not minutes)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from qbench import backends
from qbench.backends.quant import quantize
from qbench.config import make_settings
from qbench.core.errors import QBenchError
from qbench.model.datasets import load_digits_dataset, to_model_input

keras = pytest.importorskip("keras")

SIZE = 32


def tiny_model(classes=10, size=SIZE, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def dataset():
    return load_digits_dataset(SIZE).subset(200, 40)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("variants")


@pytest.fixture(scope="module")
def model_path(workdir):
    path = workdir / "tiny.keras"
    tiny_model().save(path)
    return path


@pytest.fixture(scope="module")
def session(workdir, model_path, dataset):
    from qbench.session import QBenchSession

    settings = make_settings(
        model_path=str(model_path), build_dir=str(workdir / "build"), calibration_samples=20, variants="all,tvm-avx2-fp32"
    )
    msgs = []
    s = QBenchSession(settings, msgs.append, isolate=False)
    s._dataset = dataset  # skip loading: same digits subset as the fixture
    s.messages = msgs
    return s


def test_user_model_is_validated_and_keyed_by_content(session, model_path):
    info = session.model_info
    assert info.path == model_path and not info.trained_here
    assert (info.image_size, info.num_classes) == (SIZE, 10)


def test_all_variants_build_with_metadata(session):
    for v in ("native", "tflite-fp32", "tflite-int8", "tvm-avx2-int8"):
        art = session.artifact(v)
        assert art.path.is_file() and art.size_bytes > 0
        meta = json.loads(art.path.with_suffix(art.path.suffix + ".json").read_text())
        assert meta["variant"] == v and meta["build_seconds"] >= 0
    int8 = session.artifact("tflite-int8")
    assert int8.meta["calibration_split"] == "train" and int8.meta["calibration_samples"] == 20
    assert int8.meta["input"]["dtype"] == "int8" and int8.meta["output"]["dtype"] == "int8"
    assert session.artifact("tvm-avx2-int8").meta["target"]["mcpu"] == "core-avx2"
    assert not list(session.builder.dir.glob(".*")), "temporary files left behind"


def test_second_build_is_cached(session):
    from qbench.backends.cache import VariantBuilder

    fresh = VariantBuilder(session.model_info, session.dataset, session.settings)
    for v in ("tflite-fp32", "tflite-int8", "tvm-avx2-int8"):
        assert fresh.build(v).cached


def test_runners_agree_with_keras(session, model_path):
    model = keras.models.load_model(model_path)
    x, _ = session.test_inputs()
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(session.runner("native").predict_many(x), expected, atol=1e-5)
    np.testing.assert_allclose(session.runner("tflite-fp32").predict_many(x), expected, atol=1e-4)
    # TVM's float build of the same .tflite: float in, float out, the same scores
    tvm_fp32 = session.runner("tvm-avx2-fp32")
    assert tvm_fp32.input_qparams is None and tvm_fp32.output_qparams is None
    np.testing.assert_allclose(tvm_fp32.predict_many(x), expected, atol=1e-4)
    assert "tvm-avx2-fp32" not in backends.names(default_only=True)  # selected by name until TVM is tuned
    # int8 paths: within a few output quantization steps of the float model
    for v in ("tflite-int8", "tvm-avx2-int8"):
        got = session.runner(v).predict_many(x)
        step = session.runner(v).output_qparams.scale
        assert np.max(np.abs(got - expected)) <= 4 * step, v


def test_tvm_int8_module_has_no_float_convolution_or_matmul(session):
    """The integer lowering rewrote every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED of the int8
    model: the module TVM compiles has no float32 conv2d or matmul left (``from_tflite``'s own has)."""
    from collections import Counter

    from qbench.backends.tflite_model import op_outputs
    from qbench.backends.tvm import import_tflite, relax_module
    from qbench.tvm.int8_lowering import float_compute_ops

    buf = session.artifact("tflite-int8").path.read_bytes()
    ops = Counter(op for _, _, op in op_outputs(buf))
    assert float_compute_ops(import_tflite(buf)), "from_tflite no longer float-simulates: revisit the lowering"
    mod, lowered = relax_module(buf)
    assert not float_compute_ops(mod)
    assert lowered.get("conv2d", 0) == ops["CONV_2D"] and lowered.get("conv2d-depthwise", 0) == ops["DEPTHWISE_CONV_2D"]
    assert lowered.get("dense", 0) == ops["FULLY_CONNECTED"]
    assert session.artifact("tvm-avx2-int8").meta["integer_lowered"] == lowered


def test_tvm_artifacts_carry_no_debug_info_but_keep_kernel_symbols(session):
    """The exported .so is what a deployment ships: no DWARF sections, but the symbol table (kernel
    names for profilers) and the runtime's entry points stay."""
    for variant in ("tvm-avx2-int8",):
        data = session.artifact(variant).path.read_bytes()
        assert data[:4] == b"\x7fELF"
        assert b".debug_info" not in data and b".debug_loc" not in data, variant
        assert b"_compute_" in data and b"__tvm_ffi__library_bin" in data, variant


def test_int8_runner_quantizes_inputs_per_spec(session):
    runner = session.runner("tflite-int8")
    q = runner.input_qparams
    x, _ = session.test_inputs()
    prepared = runner.prepare(x[:1])
    np.testing.assert_array_equal(prepared, quantize(x[:1], q.scale, q.zero_point))
    tvm = session.runner("tvm-avx2-int8")
    assert tvm.input_qparams == q
    np.testing.assert_array_equal(tvm.prepare(x[:1]).numpy(), prepared)


def test_tvm_and_litert_int8_are_close_on_a_small_model(session):
    litert, tvm = session.runner("tflite-int8"), session.runner("tvm-avx2-int8")
    x, _ = session.test_inputs()
    for i in range(len(x)):
        q = litert.prepare(x[i : i + 1])
        diff = np.abs(litert.invoke(q).astype(int) - tvm.invoke_raw(q).astype(int)).max()
        assert diff <= 2, f"image {i}: {diff} LSB apart"


@pytest.mark.parametrize("variant", ["native", "tflite-fp32", "tflite-int8", "tvm-avx2-int8"])
def test_wrong_input_shape_is_a_clear_error(session, variant):
    with pytest.raises(
        QBenchError, match=rf"{variant}: input shape \(1, 16, 16, 3\) does not match the model input \(1, 32, 32, 3\)"
    ):
        session.runner(variant).predict(np.zeros((1, 16, 16, 3), np.float32))


def test_corrupt_cached_artifact_is_rebuilt(workdir, model_path, dataset):
    from qbench.session import QBenchSession

    settings = make_settings(model_path=str(model_path), build_dir=str(workdir / "build"), calibration_samples=20)
    s = QBenchSession(settings, (msgs := []).append, isolate=False)
    s._dataset = dataset
    path = s.builder.path_for("tflite-int8")
    assert path.is_file()
    path.write_bytes(b"TFL3 but truncated")
    runner = s.runner("tflite-int8")
    # the sidecar's size/sha256 record catches it before anything loads it
    assert any(f"tflite-int8: cached artifact {path} does not match its record (size/sha256" in m for m in msgs), msgs
    assert runner.predict(s.test_inputs()[0][:1]).shape == (1, 10)
    s.close()

    # a file that matches its record but that the runtime refuses (a runtime upgraded under the cache) is rebuilt too
    import json

    from qbench.backends.cache import sidecar
    from qbench.core.fsutil import sha256_of

    path.write_bytes(b"TFL3 but truncated")
    meta = json.loads(sidecar(path).read_text())
    meta["artifact"] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    sidecar(path).write_text(json.dumps(meta))
    s = QBenchSession(settings, (msgs := []).append, isolate=False)
    s._dataset = dataset
    runner = s.runner("tflite-int8")
    assert any("unusable" in m and "rebuilding" in m for m in msgs), msgs
    assert runner.predict(s.test_inputs()[0][:1]).shape == (1, 10)


def test_litert_and_tvm_load_errors(tmp_path):
    from qbench.backends.tflite import LiteRTRunner
    from qbench.backends.tvm import TVMRunner

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(QBenchError, match="tflite-int8: LiteRT cannot load"):
        LiteRTRunner(bad, "tflite-int8")
    so = tmp_path / "bad.so"
    so.write_bytes(b"\x7fELF garbage")
    with pytest.raises(QBenchError, match="tvm-avx2-int8: metadata .* missing"):
        TVMRunner(so)
    with pytest.raises(QBenchError, match="tvm-avx2-int8: cannot load"):
        TVMRunner(so, {"input": {}, "output": {}})


def test_parse_model_rejects_garbage():
    from qbench.backends.tflite_model import parse_model

    with pytest.raises(QBenchError, match="not a TFLite flatbuffer"):
        parse_model(b"garbage!")
    with pytest.raises(QBenchError, match="corrupt"):
        parse_model(b"\x00\x00\x00\x00TFL3" + b"\xff" * 8)


def test_int8_conversion_needs_calibration_data():
    from qbench.backends.tflite import convert_tflite_integer

    with pytest.raises(QBenchError, match="no calibration samples"):
        convert_tflite_integer(tiny_model(), np.zeros((0, SIZE, SIZE, 3), np.float32))


def test_weight_tensors_of_int8_model(session):
    from qbench.backends.tflite_model import weight_tensors

    tensors = weight_tensors(session.artifact("tflite-int8").path.read_bytes())
    ops = {t.op for t in tensors}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= ops
    assert all(np.all(t.zero_points == 0) and t.values.min() >= -127 for t in tensors)


def test_bad_user_models(tmp_path, dataset):
    from qbench.model.under_test import load_keras_model, model_io_shape, prepare_model

    fake = tmp_path / "fake.keras"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(QBenchError, match=r"model file .*fake.keras could not be loaded") as exc:
        load_keras_model(fake)
    assert "\n" not in str(exc.value)

    three = tmp_path / "three.keras"
    tiny_model(classes=3).save(three)
    with pytest.raises(QBenchError, match="predicts 3 classes but the digits dataset has 10"):
        prepare_model(make_settings(model_path=str(three), build_dir=str(tmp_path)), dataset, print)

    inp = keras.Input((32, 24, 3))
    flat = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    with pytest.raises(QBenchError, match="square RGB images"):
        model_io_shape(flat)
    inp = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inp)
    two = keras.Model(inp, [keras.layers.Dense(2)(pooled), keras.layers.Dense(3)(pooled)])
    with pytest.raises(QBenchError, match="one input and one output"):
        model_io_shape(two)


def test_the_shapes_read_from_the_config_are_the_loaded_models_or_none(tmp_path):
    """What the pytest process reads from a .keras archive without Keras agrees with loading it; where the config does
    not state a shape outright it says so (``None``: the caller loads the model)."""
    from qbench.model.keras_io import io_shape_from_config, load_keras_model, model_io_shape

    stated = {"tiny": tiny_model(classes=7), "wide": tiny_model(size=48)}
    inp = keras.Input((32, 32, 3))
    stated["softmax-last"] = keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(4)(keras.layers.Flatten()(inp))))
    stated["sequential"] = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    for name, model in stated.items():
        path = tmp_path / f"{name}.keras"
        model.save(path)
        read = io_shape_from_config(path)
        assert read in (None, model_io_shape(load_keras_model(path))), name
        assert (read is None) == (name in ("softmax-last", "sequential")), (name, read)
    inp = keras.Input((32, 24, 3))
    (tmp_path / "oblong").mkdir()
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp))).save(tmp_path / "oblong" / "m.keras")
    with pytest.raises(QBenchError, match="square RGB images"):
        io_shape_from_config(tmp_path / "oblong" / "m.keras")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("config.json", "{not json")
    assert io_shape_from_config(broken) is None and io_shape_from_config(tmp_path / "missing.keras") is None
    no_weights = tmp_path / "no-weights.keras"
    with zipfile.ZipFile(tmp_path / "tiny.keras") as src, zipfile.ZipFile(no_weights, "w") as zf:
        zf.writestr("config.json", src.read("config.json"))
        zf.writestr("model.weights.h5", b"not hdf5")
    assert io_shape_from_config(no_weights) is None


def test_symmetric_preprocessing_reaches_the_model(tmp_path, dataset):
    """--qbench-preprocess symmetric feeds [-1, 1] to a user's model, in every variant."""
    from qbench.session import QBenchSession

    path = tmp_path / "m.keras"
    tiny_model(seed=1).save(path)
    s = QBenchSession(
        make_settings(model_path=str(path), preprocess="symmetric", build_dir=str(tmp_path / "b"), calibration_samples=10),
        isolate=False,
    )
    s._dataset = dataset
    x, _ = s.test_inputs()
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, to_model_input(dataset.test()[0], "symmetric"))


def test_tvm_cache_key_follows_the_compiler_source(tmp_path):
    """Any edit to the modules that decide what TVM compiles changes the TVM variants' cache key."""
    import shutil
    from types import SimpleNamespace

    from qbench.backends import tvm as tvm_backend

    copy = tmp_path / "qbench"
    for name in tvm_backend._COMPILER_MODULES:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tvm_backend._QBENCH_ROOT / name, copy / name)
    assert tvm_backend.compiler_digest(copy) == tvm_backend.compiler_digest()
    for name in tvm_backend._COMPILER_MODULES:
        before = tvm_backend.compiler_digest(copy)
        (copy / name).write_text((copy / name).read_text() + "\n# edited\n")
        tvm_backend.compiler_digest.cache_clear()
        assert tvm_backend.compiler_digest(copy) != before, name

    # every module of qbench/tvm a build runs is listed (vnni_int8_kernels.py was not: editing the VNNI
    # kernels left stale .so files in the cache); the tuner itself only writes databases, keyed apart
    compiled = {f"tvm/{p.name}" for p in (tvm_backend._QBENCH_ROOT / "tvm").glob("*.py")} - {"tvm/__init__.py", "tvm/tuning.py"}
    assert compiled <= set(tvm_backend._COMPILER_MODULES), sorted(compiled - set(tvm_backend._COMPILER_MODULES))

    ctx = SimpleNamespace(settings=SimpleNamespace(threads=2, build_dir=str(tmp_path / "build")))
    for variant in ("tvm-avx2-int8", "tvm-avx2-fp32"):
        assert tvm_backend.compiler_digest() in backends.get(variant).cache_key(ctx)
