"""Where TVM tuning databases live, and how they are read and written.

Why: the TVM variants' builds apply tuned schedules from MetaSchedule
databases (workloads + trace records, :mod:`qbench.tvm.tuning` makes them):
the user's, written by ``qbench tune`` beside the artifact cache
(``build/tvm-tuning/``), before the committed one (``qbench/tvm/tuning_db/``,
tuned for the 224x224 Kenning-sized model's shapes).  A database's contents
are in the TVM variants' cache key, so a new one rebuilds them.  qbench
writes databases xz-compressed (MetaSchedule's JSON is about 40 times larger
than it needs to be) and whole: staged beside the target and moved into place.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from qbench.core.errors import QBenchError, one_line
from qbench.core.fsutil import current_umask, stable_hash

COMMITTED_DATABASE = Path(__file__).with_name("tuning_db")
USER_DATABASE = "tvm-tuning"  # under the build directory, beside variants/
DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


def user_database(build_dir: str | os.PathLike) -> Path:
    return Path(build_dir) / USER_DATABASE


def database_files(d: Path) -> list[Path] | None:
    """A database's two files: qbench writes them xz-compressed (70 kernels were 10.8 MB as JSON,
    0.25 MB compressed); plain JSON, as MetaSchedule writes it, is read too.  None if incomplete."""
    for suffix in (".xz", ""):
        files = [d / (name + suffix) for name in DATABASE_FILES]
        if all(f.is_file() for f in files):
            return files
    return None


def database_dirs(build_dir: str | os.PathLike | None) -> list[Path]:
    """The databases a build applies, the user's first (it wins where both have a kernel)."""
    dirs = [user_database(build_dir)] if build_dir is not None else []
    dirs.append(COMMITTED_DATABASE)
    return [d for d in dirs if database_files(d) is not None]


def database_digest(dirs: Iterable[Path]) -> str:
    """A digest of the databases' contents, for the TVM variants' cache key."""
    return stable_hash(*[f.read_bytes() for d in dirs for f in database_files(d) or []])


def open_database(dirs: list[Path], mcpu: str | None = None):
    """One MetaSchedule database over ``dirs`` (first one wins), or None when there are none; with
    ``mcpu``, only the records tuned for that LLVM CPU (a schedule tuned for AVX2 is not one for VNNI)."""
    from tvm.s_tir import meta_schedule as ms

    from qbench.tvm import avx2_int8_kernels, vnni_int8_kernels

    avx2_int8_kernels.register_intrinsic()  # the records' traces name them
    for lanes in (16, 8):
        vnni_int8_kernels.register_intrinsic(lanes)
    opened = []
    for d in dirs:
        files = database_files(d)
        if files is None:
            raise QBenchError(f"TVM tuning database {d} is incomplete: it needs {' and '.join(DATABASE_FILES)} (or .xz)")
        try:
            with tempfile.TemporaryDirectory(prefix="qbench-tuning-db-") as plain:
                if files[0].suffix == ".xz":  # JSONDatabase reads everything when it is made
                    files = [_decompress(f, Path(plain) / f.stem) for f in files]
                opened.append(ms.database.JSONDatabase(*(str(f) for f in files), allow_missing=False))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {one_line(exc)}"
            fix = "delete it or re-run qbench tune"
            raise QBenchError(f"TVM tuning database {d} is unreadable ({detail}): {fix}") from None
    if mcpu is not None:
        opened = [db for db in (_records_for(db, mcpu) for db in opened) if db is not None]
    if not opened:
        return None
    return opened[0] if len(opened) == 1 else ms.database.OrderedUnionDatabase(*opened)


def _records_for(database, mcpu: str):
    """``database`` itself if every record was tuned for ``mcpu``; else an in-memory copy of those that
    were, or None if none was."""
    from tvm.s_tir import meta_schedule as ms

    records = database.get_all_tuning_records()
    mine = [r for r in records if _mcpu(r.target) == mcpu]
    if len(mine) == len(records):
        return database
    if not mine:
        return None
    memory = ms.database.MemoryDatabase()
    for r in mine:
        _copy_record(memory, r)
    return memory


def _mcpu(target) -> str:
    return str(target.attrs.get("mcpu", ""))


def _copy_record(database, record) -> None:
    """``record`` committed to ``database``, re-made on that database's own workload entry."""
    from tvm.s_tir import meta_schedule as ms

    workload = database.commit_workload(record.workload.mod)
    database.commit_tuning_record(
        ms.database.TuningRecord(record.trace, workload, record.run_secs, record.target, record.args_info)
    )


def _decompress(source: Path, target: Path) -> Path:
    target.write_bytes(lzma.decompress(source.read_bytes()))
    return target


def stage(records: Iterable[tuple], target, out_dir: Path, replaced: set[int]) -> Path:
    """A new database in a staging directory beside ``out_dir``: ``records`` (workload module, schedule
    trace, seconds), then the records of the database already at ``out_dir`` whose workload (by
    structural hash) is not in ``replaced`` or that were tuned for another CPU (``mcpu``): tuning for
    one target keeps another's records.  Returns the staging directory (plain JSON)."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    database = ms.database.JSONDatabase(*(str(staging / f) for f in DATABASE_FILES))
    for workload_mod, trace, seconds in records:
        workload = database.commit_workload(workload_mod)
        args = ms.arg_info.ArgInfo.from_prim_func(workload_mod["main"])
        database.commit_tuning_record(ms.database.TuningRecord(trace, workload, [seconds], target, args))
    if database_files(out_dir) is not None:
        for record in open_database([out_dir]).get_all_tuning_records():
            if _mcpu(record.target) != _mcpu(target) or tvm_ffi.structural_hash(record.workload.mod) not in replaced:
                _copy_record(database, record)
    return staging


def install(staging: Path, out_dir: Path) -> int:
    """Compress the staged database and move it to ``out_dir`` (the old one out of the way first: never
    half-written).  Returns how many kernels it holds."""
    count = sum(1 for _ in (staging / DATABASE_FILES[1]).open())
    for name in DATABASE_FILES:
        plain = staging / name
        (staging / (name + ".xz")).write_bytes(lzma.compress(plain.read_bytes(), preset=9))
        plain.unlink()
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; a database should look like any directory
    retired = None
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
    os.replace(staging, out_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return count
