"""The committed reference model: used exactly when it fits the session's split."""

from __future__ import annotations

import json

import pytest

from qbench.config import make_settings
from qbench.core.fsutil import file_hash
from qbench.model import reference
from qbench.model.datasets import load_session_dataset


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    settings = make_settings(build_dir=str(tmp_path_factory.mktemp("b")))
    return settings, load_session_dataset(settings, settings.profile.image_size)


def test_the_default_benchmark_uses_the_committed_model(default_dataset):
    settings, dataset = default_dataset
    ref = reference.committed_reference(settings, dataset)
    assert ref is not None, "the default digits split no longer matches the committed reference's fingerprint"
    assert ref.path.name == "digits-full.keras" and ref.key == "ref-" + file_hash(ref.path)
    meta = json.loads((reference.REFERENCE_DIR / "digits-full.json").read_text())
    assert meta["regenerate"] == reference.REGENERATE and meta["recipe"]["epochs"] == settings.profile.epochs


def test_train_option_and_other_splits_do_not_use_it(default_dataset, tmp_path):
    settings, dataset = default_dataset
    assert reference.committed_reference(settings.with_(train=True), dataset) is None
    other = make_settings(build_dir=str(tmp_path), seed=1)
    said = []
    assert reference.committed_reference(other, load_session_dataset(other, 64), said.append) is None
    assert "trained on a different split" in said[0]


def test_an_altered_reference_file_is_not_trusted(default_dataset, tmp_path, monkeypatch):
    settings, dataset = default_dataset
    fake = tmp_path / "ref"
    fake.mkdir()
    (fake / "digits-full.json").write_text((reference.REFERENCE_DIR / "digits-full.json").read_text())
    (fake / "digits-full.keras").write_bytes(b"PK\x03\x04 not the model")
    monkeypatch.setattr(reference, "REFERENCE_DIR", fake)
    said = []
    assert reference.committed_reference(settings, dataset, said.append) is None
    assert "missing or altered" in said[0]
