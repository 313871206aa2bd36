import os

import pytest

from qbench.core.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, file_hash, stable_hash


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_atomic_write_replaces_target(tmp_path):
    target = tmp_path / "sub" / "model.tflite"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _leftovers(target.parent) == []


def test_written_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        target = atomic_write_bytes(tmp_path / "a.tflite", b"x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


def test_failed_writer_leaves_target_untouched(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"good model")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a mod")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"good model"
    assert _leftovers(tmp_path) == []


def test_empty_output_is_an_error(tmp_path):
    target = tmp_path / "x.so"
    with pytest.raises(OSError, match="no data"), atomic_path(target):
        pass  # writer forgot to write
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_temporary_keeps_the_suffix(tmp_path):
    # Keras and TVM pick the output format from the file extension.
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_json_and_hashes(tmp_path):
    p = atomic_write_json(tmp_path / "meta.json", {"b": 1, "a": [1, 2]})
    assert p.read_text().startswith('{\n  "a"')
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash(b"x") != stable_hash("x")
    assert len(file_hash(p)) == 16
    os.chmod(p, 0o644)
