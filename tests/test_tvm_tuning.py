"""TVM tuning (:mod:`qbench.tvm.tuning`), its databases (:mod:`qbench.tvm.tuning_database`) and
``qbench tune``.

What must hold whatever the machine's timings are: a database's schedules
are applied at build time and compute what the default schedule computes; a
database changes the TVM variants' cache key; a broken database or bad
option is one line; a tuning run writes a complete database or none; the
committed database opens and every record in it replays on its kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

from qbench.core.errors import QBenchError
from tests.test_tvm_int8_lowering import _one_op_case


def _pointwise_module():
    from qbench.backends.tvm import relax_module

    return relax_module(_one_op_case("pointwise", 0)[0])[0]


def _target():
    import tvm

    from qbench.backends.tvm import tvm_target_spec

    return tvm.target.Target(tvm_target_spec(2))


def _run(mod, target, database=None, applied=None, knobs=None):
    import tvm
    from tvm import relax

    from qbench.tvm.cpu_schedule import Knobs, compile_module, cpu_pipeline

    pipeline = cpu_pipeline(target, database=database, applied=applied, knobs=knobs or Knobs())
    vm = relax.VirtualMachine(compile_module(mod, target, pipeline), tvm.cpu())
    shape = [int(d) for d in mod["main"].params[0].ty.shape]
    x = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    return vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()


def test_a_database_is_applied_at_build_time_and_computes_what_the_default_schedule_does(tmp_path):
    from qbench.tvm.cpu_schedule import Knobs
    from qbench.tvm.tuning import Kernel, TuningRun, _choose, _stage, fused_module, kernels_of, knob_grid
    from qbench.tvm.tuning_database import database_digest, install, open_database

    mod, target = _pointwise_module(), _target()
    grid = knob_grid()
    other = grid.index(Knobs(parallel=True, pixels=2))
    run = TuningRun()
    for name, (key, workload) in kernels_of(fused_module(mod, target)).items():
        # as if the other choice had measured twice as fast: every kernel is kept
        run.kernels[key] = Kernel(name, workload, seconds={0: 2e-6, other: 1e-6})
    out = tmp_path / "db"
    _choose(run, grid)
    written = install(_stage(run, target, out), out)
    assert written == len(run.kernels) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["db"], "staging directories were left behind"

    applied = {}
    tuned = _run(mod, target, open_database([out]), applied)
    assert applied["tuned"] == written
    np.testing.assert_array_equal(tuned, _run(mod, target))

    before = database_digest([out])
    run.kernels = dict(list(run.kernels.items())[:1])
    assert install(_stage(run, target, out), out) == written, "a re-run must keep what it did not measure"
    assert database_digest([out]) == before


def test_an_unreadable_database_is_one_line(tmp_path):
    from qbench.tvm.tuning_database import DATABASE_FILES, open_database

    for name in DATABASE_FILES:
        (tmp_path / name).write_text("[0, garbage\n")  # plain JSON, as MetaSchedule writes it
    with pytest.raises(QBenchError) as excinfo:
        open_database([tmp_path])
    message = str(excinfo.value)
    assert "\n" not in message and str(tmp_path) in message and "qbench tune" in message


def test_the_committed_database_opens_and_every_record_replays():
    import tvm
    import tvm_ffi

    from qbench.tvm.tuning_database import COMMITTED_DATABASE, database_dirs, open_database

    assert COMMITTED_DATABASE in database_dirs(None), "qbench/tvm/tuning_db is missing or incomplete"
    database = open_database([COMMITTED_DATABASE])
    records = database.get_all_tuning_records()
    assert records
    for record in records:
        sch = tvm.s_tir.Schedule(record.workload.mod)
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        assert not tvm_ffi.structural_equal(sch.mod, record.workload.mod), "a record that schedules nothing"


def test_tune_writes_a_whole_database_or_none(tmp_path):
    from qbench.tvm.tuning import tune
    from qbench.tvm.tuning_database import DATABASE_FILES, open_database

    mod, target = _pointwise_module(), _target()
    lines = []
    run = tune([mod], tmp_path / "db", target, max_points=3, progress=lines.append)
    assert any("best so far" in line for line in lines), lines
    assert run.points == 3 and len(run.p_values) == 1
    summary = run.summary()
    assert "end to end" in summary and "Mann-Whitney" in summary
    left = sorted(p.name for p in tmp_path.iterdir())
    if run.written is None:
        assert left == [], "nothing may be written when the tuned build is not faster"
    else:
        assert left == ["db"] and all((tmp_path / "db" / (f + ".xz")).is_file() for f in DATABASE_FILES)
        assert len(open_database([tmp_path / "db"]).get_all_tuning_records()) == run.written


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--trials", "1"], "--trials must be at least 2"),
        (["--time-budget", "0"], "--time-budget must be positive"),
        (["--threads", "0"], "--threads must be at least 1"),
        ([], "no .tflite artifacts under"),
        (["missing.tflite"], "cannot read missing.tflite"),
    ],
)
def test_tune_command_line_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, expected):
    from qbench.cli.tune import main

    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--build-dir", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err, err


def test_tune_on_a_file_that_is_not_a_tflite_model_is_one_line(tmp_path, capsys):
    from qbench.cli.tune import main

    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer")
    assert main([str(bad), "--output", str(tmp_path / "db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model" in err.lower(), err
    assert not (tmp_path / "db").exists()


def test_tune_finds_the_newest_int8_and_fp32_tflite_of_each_model(tmp_path):
    import os

    from qbench.cli.tune import built_models

    variants = tmp_path / "variants"
    made = {}
    for model in ("aaa", "bbb"):
        for i, name in enumerate(
            ["tflite-int8-old.tflite", "tflite-int8-new.tflite", "tflite-fp32-x.tflite", "tflite-fp16-y.tflite"]
        ):
            path = variants / model / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            os.utime(path, (1_000_000 + i, 1_000_000 + i))
            made[(model, name)] = path
    (variants / "aaa" / "calibration").mkdir()
    (variants / "aaa" / "calibration" / "tflite-int8-cal.tflite").write_bytes(b"x")
    assert built_models(tmp_path) == [
        made[("aaa", "tflite-int8-new.tflite")],
        made[("aaa", "tflite-fp32-x.tflite")],
        made[("bbb", "tflite-int8-new.tflite")],
        made[("bbb", "tflite-fp32-x.tflite")],
    ]
