import numpy as np
import pytest
from PIL import Image

from qbench.core.errors import QBenchError
from qbench.model.datasets import load_dataset, load_digits_dataset, load_pet_dataset, stratified_split, to_model_input
from tests.helpers import PET_BREEDS


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset(image_size=32, seed=0)


def test_digits_shape_and_split(digits):
    assert digits.images.shape == (1797, 32, 32, 3) and digits.images.dtype == np.uint8
    assert digits.num_classes == 10
    # grey digits upscaled to RGB: all channels equal, full 0..255 range used
    assert np.array_equal(digits.images[..., 0], digits.images[..., 2])
    assert digits.images.max() == 255 and digits.images.min() == 0
    assert len(digits.train_idx) + len(digits.test_idx) == 1797
    assert np.intersect1d(digits.train_idx, digits.test_idx).size == 0
    # stratified: every class in the test split in proportion (about 20 %)
    counts = np.bincount(digits.labels[digits.test_idx], minlength=10)
    totals = np.bincount(digits.labels, minlength=10)
    assert np.all(np.abs(counts - 0.2 * totals) <= 1)


def test_split_is_seeded(digits):
    again = load_digits_dataset(image_size=32, seed=0)
    other = load_digits_dataset(image_size=32, seed=1)
    assert np.array_equal(again.test_idx, digits.test_idx)
    assert not np.array_equal(other.test_idx, digits.test_idx)
    assert again.fingerprint() == digits.fingerprint() != other.fingerprint()


def test_calibration_comes_from_train_only(digits):
    for n in (1, 10, 200, 10_000):
        idx = digits.calibration_indices(n)
        assert len(idx) == min(n, len(digits.train_idx))
        assert np.isin(idx, digits.train_idx).all()
        assert np.intersect1d(idx, digits.test_idx).size == 0
    idx = digits.calibration_indices(100)
    assert len(np.unique(digits.labels[idx])) == 10  # stratified, all classes represented
    assert np.array_equal(idx, digits.calibration_indices(100))  # deterministic


def test_subset_is_stratified_and_nested(digits):
    small = digits.subset(100, 30)
    assert len(small.train_idx) == 100 and len(small.test_idx) == 30
    assert np.isin(small.train_idx, digits.train_idx).all() and np.isin(small.test_idx, digits.test_idx).all()
    assert len(np.unique(small.labels[small.train_idx])) == 10


def test_preprocessing_ranges():
    px = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(to_model_input(px, "unit"), [[[[0, 128 / 255, 1]]]])
    np.testing.assert_allclose(to_model_input(px, "symmetric"), [[[[-1, 128 / 127.5 - 1, 1]]]], atol=1e-6)
    with pytest.raises(QBenchError, match="unknown preprocessing"):
        to_model_input(px, "imagenet")


def test_stratified_split_edge_cases():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    train, test = stratified_split(labels, 0.25, seed=0)
    assert set(labels[test]) == {0, 1}  # the singleton class stays in train
    assert 2 in labels[train]
    with pytest.raises(QBenchError):
        stratified_split(labels, 0.0, 0)


def test_pet_loader_on_generated_tree(pet_tree, tmp_path):
    progress = []
    ds = load_pet_dataset(
        pet_tree, image_size=32, seed=0, test_fraction=0.25, cache_dir=tmp_path / "cache", progress=progress.append
    )
    assert ds.name == "pet" and ds.images.shape == (36, 32, 32, 3)
    assert ds.class_names == [b[0] for b in PET_BREEDS]  # ordered by class id 1, 2, 6
    assert np.array_equal(np.bincount(ds.labels), [12, 12, 12])
    assert np.array_equal(np.bincount(ds.labels[ds.test_idx]), [3, 3, 3])
    # the colour of each breed survived decoding and resizing
    for k in range(3):
        mean_rgb = ds.images[ds.labels == k].mean(axis=(0, 1, 2))
        assert np.argmax(mean_rgb) == k
    assert any("decoded 36/36" in m for m in progress)
    # second load comes from the cache and is identical
    progress.clear()
    again = load_pet_dataset(
        pet_tree, image_size=32, seed=0, test_fraction=0.25, cache_dir=tmp_path / "cache", progress=progress.append
    )
    assert any("cached" in m for m in progress)
    assert np.array_equal(again.images, ds.images) and np.array_equal(again.test_idx, ds.test_idx)
    calib = ds.calibration_indices(6)
    assert np.intersect1d(calib, ds.test_idx).size == 0


def test_pet_corrupt_cache_is_rebuilt(pet_tree, tmp_path):
    cache = tmp_path / "cache"
    load_pet_dataset(pet_tree, image_size=32, cache_dir=cache)
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(b"garbage")
    msgs = []
    ds = load_pet_dataset(pet_tree, image_size=32, cache_dir=cache, progress=msgs.append)
    assert ds.images.shape[0] == 36 and any("ignoring unreadable dataset cache" in m for m in msgs)


def test_pet_errors(pet_tree, tmp_path):
    with pytest.raises(QBenchError, match="does not exist"):
        load_pet_dataset(tmp_path / "nope")
    with pytest.raises(QBenchError, match="needs --qbench-dataset-root"):
        load_dataset("pet", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QBenchError, match=r"annotations/list.txt not found"):
        load_pet_dataset(empty)

    (pet_tree / "images" / "Bengal_3.jpg").unlink()
    with pytest.raises(QBenchError, match=r"1 image\(s\) listed in .* are missing .*: Bengal_3"):
        load_pet_dataset(pet_tree, image_size=32)
    Image.new("RGB", (8, 8)).save(pet_tree / "images" / "Bengal_3.jpg")

    (pet_tree / "images" / "Bengal_4.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    with pytest.raises(QBenchError, match="cannot decode image .*Bengal_4.jpg"):
        load_pet_dataset(pet_tree, image_size=32)


def test_pet_bad_list_lines(tmp_path):
    from tests.helpers import make_pet_tree

    root = make_pet_tree(tmp_path / "p", per_class=2)
    lst = root / "annotations" / "list.txt"
    text = lst.read_text()
    lst.write_text(text + "Bengal_1 x 1 1\n")
    with pytest.raises(QBenchError, match="class id 'x' is not an integer"):
        load_pet_dataset(root, image_size=32)
    lst.write_text(text + "Bengal_1 2 1 1\n")
    with pytest.raises(QBenchError, match="class id 2 is used for both"):
        load_pet_dataset(root, image_size=32)
    lst.write_text("# only comments\n")
    with pytest.raises(QBenchError, match="lists no images"):
        load_pet_dataset(root, image_size=32)


def test_calibration_study_sets_are_train_only_and_one_class_is_one_class():
    from qbench.measure.calibration_study import calibration_sets

    ds = load_digits_dataset(32)
    sets = calibration_sets(ds, (0.01, 0.5), seed=0)
    assert [s.kind for s in sets] == ["fraction", "fraction", "one-class", "balanced"]
    train = set(ds.train_idx.tolist())
    for s in sets:
        assert set(s.indices.tolist()) <= train
    assert [s.samples for s in sets[:2]] == [round(0.01 * len(train)), round(0.5 * len(train))]
    one, balanced = sets[2], sets[3]
    assert len(set(ds.labels[one.indices])) == 1 and balanced.samples == one.samples
    assert len(set(ds.labels[balanced.indices])) == ds.num_classes
