import subprocess
import sys
import zipfile

import pytest

from qbench import backends
from qbench.config import PROFILES, check_model_file, make_settings, parse_variants
from qbench.core.errors import QBenchError


def test_defaults():
    s = make_settings()
    assert s.dataset == "digits" and s.variants == backends.names(default_only=True) and s.profile is PROFILES["full"]
    assert s.accuracy_floor == PROFILES["full"].min_accuracy
    assert s.reports == s.build_dir / "report"


def test_variant_selection_keeps_canonical_order():
    assert parse_variants("tvm-avx2-int8, native") == ("native", "tvm-avx2-int8")
    assert parse_variants("all") == backends.names(default_only=True)


def test_unknown_variant_is_one_clear_sentence():
    with pytest.raises(QBenchError, match=r"unknown variant\(s\) 'tflite-int4'; choose from native, "):
        parse_variants("native,tflite-int4")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"dataset": "pet"}, "needs --qbench-dataset-root"),
        ({"dataset": "pet", "dataset_root": "/nonexistent/pets"}, "/nonexistent/pets does not exist"),
        ({"dataset_root": "/tmp"}, "only used with --qbench-dataset pet"),
        ({"profile": "huge"}, "unknown profile 'huge'"),
        ({"preprocess": "symmetric"}, "only applies to --qbench-model-path"),
        ({"test_fraction": 1.5}, "between 0 and 1"),
        ({"min_accuracy": 2.0}, "--qbench-min-accuracy must be between 0 and 1"),
        ({"calibration_samples": 0}, "must be positive"),
        ({"model_path": "/nonexistent/model.keras"}, "does not exist"),
        ({"calibration_fractions": "0.1,1.5"}, r"must lie in \(0, 1\], got 1.5"),
        ({"calibration_fractions": "a tenth"}, "takes comma-separated numbers or 'none'"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(QBenchError, match=message):
        make_settings(**kwargs)


def test_model_file_checks(tmp_path):
    bad_ext = tmp_path / "model.pt"
    bad_ext.write_bytes(b"x")
    with pytest.raises(QBenchError, match="must be a Keras .keras or .h5 file"):
        check_model_file(bad_ext)
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"this is not a zip")
    with pytest.raises(QBenchError, match="corrupt: it is not a .keras zip archive"):
        check_model_file(garbage)
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"PK\x03\x04 zip, not hdf5")
    with pytest.raises(QBenchError, match="not an HDF5 file"):
        check_model_file(h5)
    good = tmp_path / "ok.keras"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("config.json", "{}")
    assert check_model_file(good) == good
    with pytest.raises(QBenchError, match="is not a file"):
        check_model_file(tmp_path)


def test_settings_survive_the_trip_to_the_prepare_process(tmp_path):
    import argparse

    from qbench.config import OPTIONS, settings_from_options, settings_to_argv

    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    original = make_settings(
        model_path=str(model), preprocess="symmetric", profile="smoke", variants="native,tflite-int8",
        build_dir=str(tmp_path / "b"), seed=7, test_fraction=0.3, calibration_samples=50, max_drop=0.05, threads=1,
        calibration_fractions="0.5,0.02",
    )  # fmt: skip
    parser = argparse.ArgumentParser()
    for name, type_, default, _ in OPTIONS:
        parser.add_argument(f"--{name}", type=type_, default=default)
    args = parser.parse_args(settings_to_argv(original))
    again = settings_from_options(lambda n: getattr(args, n.replace("-", "_")))
    assert again == original and again.threads == 1 and again.study_fractions == (0.02, 0.5)


def test_calibration_fractions_default_to_the_profile_and_none_turns_the_study_off():
    assert make_settings().study_fractions == (0.01, 0.08, 0.3, 0.8)
    assert make_settings(profile="smoke").study_fractions == (0.05, 0.5)
    assert make_settings(calibration_fractions="none").study_fractions == ()


def test_prepare_command_reports_bad_input_in_one_line():
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.run(
        [sys.executable, "-m", "qbench.cli", "prepare", "--dataset", "pet"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3
    assert (
        proc.stdout.strip()
        == "qbench: --qbench-dataset pet needs --qbench-dataset-root (directory with images/ and annotations/list.txt)"
    )
    assert "Traceback" not in proc.stderr


def _project(tmp_path, ini: str):
    """A user project that sets qbench's options in its pyproject.toml."""
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n" + ini)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["qbench.plugin"]\n')
    (tmp_path / "test_show.py").write_text(
        "def test_show(qbench_settings, qbench_gate):\n"
        "    s, g = qbench_settings, qbench_gate\n"
        "    print('SHOW', ','.join(s.variants), s.seed, g.threshold, s.profile.name, sorted(g.injections.slowdown.items()))\n"
    )
    return tmp_path


def _show(project, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "test_show.py", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SHOW")), None)
    return proc, line


def test_options_come_from_pyproject_and_the_command_line_wins(tmp_path):
    project = _project(
        tmp_path,
        'qbench_variants = "native,tflite-int8"\nqbench_seed = "7"\nqbench_latency_threshold = "1.5"\n'
        'qbench_profile = "smoke"\nqbench_inject_slowdown = ["tflite-int8=1.3"]\n',
    )
    proc, line = _show(project)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert line == "SHOW native,tflite-int8 7 1.5 smoke [('tflite-int8', 1.3)]"
    proc, line = _show(project, "--qbench-seed", "3", "--qbench-latency-threshold", "2", "--qbench-profile", "full")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert line == "SHOW native,tflite-int8 3 2.0 full [('tflite-int8', 1.3)]"
    # the command line narrows the variants; the ini file's injection then names one not selected: said of the ini key
    proc, line = _show(project, "--qbench-variants", "native")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4 and line is None
    assert f"qbench: {project / 'pyproject.toml'}: qbench_inject_slowdown: unknown variant 'tflite-int8'" in out


@pytest.mark.parametrize(
    "ini, message",
    [
        ('qbench_latency_threshold = "fast"', "qbench_latency_threshold = 'fast' is not a number"),
        ('qbench_seed = "one"', "qbench_seed = 'one' is not a whole number"),
        ('qbench_latency_threshold = "0.5"', "qbench_latency_threshold must be above 1, got 0.5"),
        ('qbench_variants = "native,tflite-int4"', "unknown variant(s) 'tflite-int4'"),
    ],
)
def test_a_bad_ini_value_is_one_line_naming_the_file_and_key(tmp_path, ini, message):
    project = _project(tmp_path, ini + "\n")
    proc, _ = _show(project)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    lines = [ln for ln in out.splitlines() if "qbench:" in ln]
    assert len(lines) == 1 and message in lines[0], out[-2000:]
    if "unknown variant" not in message:
        assert f"{project / 'pyproject.toml'}: " in lines[0]
    assert "Traceback" not in out
