"""Datasets: the embedded default (scikit-learn digits) and Oxford-IIIT Pet.

Images are kept as ``uint8`` RGB arrays ``(N, H, W, 3)``; :func:`to_model_input`
turns them into the float input a model expects.  Every dataset carries a
seeded, stratified train/test split; calibration samples for post-training
quantization are drawn from the *train* split only (Kenning calibrates on the
images it then evaluates on, which flatters INT8 accuracy).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qbench.core.errors import QBenchError
from qbench.core.fsutil import atomic_path, stable_hash

PREPROCESSING = ("unit", "symmetric")
DATASETS = ("digits", "pet")

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def to_model_input(images: np.ndarray, preprocess: str = "unit") -> np.ndarray:
    """uint8 pixels -> float32 model input.

    ``unit``: [0, 1] (qbench's own models rescale internally);
    ``symmetric``: [-1, 1], what ``keras.applications.mobilenet_v2.preprocess_input`` gives.
    """
    x = np.asarray(images, dtype=np.float32)
    if preprocess == "unit":
        return x / np.float32(255.0)
    if preprocess == "symmetric":
        return x / np.float32(127.5) - np.float32(1.0)
    raise QBenchError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESSING)}")


@dataclass
class Dataset:
    name: str
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    train_idx: np.ndarray
    test_idx: np.ndarray
    seed: int
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")
        if np.intersect1d(self.train_idx, self.test_idx).size:
            raise ValueError("train and test splits overlap")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.images[self.train_idx], self.labels[self.train_idx]

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.images[self.test_idx], self.labels[self.test_idx]

    def calibration_indices(self, n: int, seed: int | None = None) -> np.ndarray:
        """Indices of ``n`` calibration samples, stratified, from the train split only."""
        n = int(min(n, len(self.train_idx)))
        if n <= 0:
            raise QBenchError("the train split is empty: nothing to calibrate INT8 quantization on")
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        if n == len(self.train_idx):
            return np.sort(self.train_idx)
        labels = self.labels[self.train_idx]
        picked = _stratified_pick(labels, n, rng)
        return np.sort(self.train_idx[picked])

    def subset(self, max_train: int | None, max_test: int | None) -> Dataset:
        """Stratified subsample of both splits (used by the small ``smoke`` profile)."""
        rng = np.random.default_rng(self.seed + 2)
        train, test = self.train_idx, self.test_idx
        if max_train and len(train) > max_train:
            train = np.sort(train[_stratified_pick(self.labels[train], max_train, rng)])
        if max_test and len(test) > max_test:
            test = np.sort(test[_stratified_pick(self.labels[test], max_test, rng)])
        return Dataset(self.name, self.images, self.labels, self.class_names, train, test, self.seed, self.source)

    def fingerprint(self) -> str:
        """Content hash of images, labels and split: the model cache key depends on it."""
        if self._fingerprint is None:
            self._fingerprint = stable_hash(
                self.name,
                list(self.images.shape),
                self.class_names,
                self.images.tobytes(),
                self.labels.astype(np.int64).tobytes(),
                self.train_idx.astype(np.int64).tobytes(),
                self.test_idx.astype(np.int64).tobytes(),
            )
        return self._fingerprint


def _stratified_pick(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``n`` items chosen proportionally per class (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    picked = []
    for cls, k in zip(classes, take, strict=True):
        pos = np.flatnonzero(labels == cls)
        picked.append(rng.choice(pos, size=min(k, len(pos)), replace=False))
    return np.concatenate(picked) if picked else np.zeros(0, dtype=int)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split; every class with >= 2 samples lands in both splits."""
    if not 0.0 < test_fraction < 1.0:
        raise QBenchError(f"test fraction must be between 0 and 1, got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        pos = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(pos) * test_fraction))
        n_test = min(max(n_test, 1), len(pos) - 1) if len(pos) >= 2 else 0  # a singleton class stays in train
        test.append(pos[:n_test])
        train.append(pos[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _resize_rgb(image: np.ndarray | Image.Image, size: int) -> np.ndarray:  # noqa: F821
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_digits_dataset(image_size: int = 64, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1797 8x8 handwritten digits, upscaled (bilinear) to RGB ``image_size``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if image_size < 32:
        raise QBenchError(f"image size must be at least 32 for MobileNetV2, got {image_size}")
    digits = load_digits()
    gray = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = np.empty((len(gray), image_size, image_size, 3), dtype=np.uint8)
    for i, img in enumerate(gray):
        up = Image.fromarray(img, mode="L").resize((image_size, image_size), Image.BILINEAR)
        images[i] = np.asarray(up)[..., None]
    labels = digits.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("digits", images, labels, [str(i) for i in range(10)], train, test, seed, "sklearn.datasets.load_digits")


# ---------------------------------------------------------------- Oxford-IIIT Pet


def _parse_pet_list(list_file: Path) -> list[tuple[str, int]]:
    """``annotations/list.txt``: ``<image> <class-id 1..37> <species> <breed-id>``."""
    entries = []
    for lineno, raw in enumerate(list_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise QBenchError(f"{list_file}:{lineno}: expected '<image> <class-id> ...', got {raw!r}")
        try:
            class_id = int(parts[1])
        except ValueError:
            raise QBenchError(f"{list_file}:{lineno}: class id {parts[1]!r} is not an integer") from None
        if class_id < 1:
            raise QBenchError(f"{list_file}:{lineno}: class id must be >= 1, got {class_id}")
        entries.append((parts[0], class_id))
    if not entries:
        raise QBenchError(f"{list_file} lists no images")
    return entries


def _breed_name(image_name: str) -> str:
    return image_name.rsplit("_", 1)[0] if "_" in image_name else image_name


def load_pet_dataset(
    root: str | os.PathLike,
    image_size: int = 224,
    seed: int = 0,
    test_fraction: float = 0.2,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress = _quiet,
) -> Dataset:
    """Oxford-IIIT Pet in its published layout: ``images/*.jpg`` + ``annotations/list.txt``.

    Class ids 1..37 from ``list.txt`` become labels 0..K-1 (only the ids that
    occur, so a partial tree works); breed names come from the file names.
    Decoded, resized arrays are cached in ``cache_dir`` (atomic write).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise QBenchError(f"Pet dataset root {root} does not exist (expected images/*.jpg and annotations/list.txt)")
    list_file = root / "annotations" / "list.txt"
    image_dir = root / "images"
    if not list_file.is_file():
        raise QBenchError(f"{list_file} not found: is {root} an Oxford-IIIT Pet dataset root?")
    if not image_dir.is_dir():
        raise QBenchError(f"{image_dir} not found: is {root} an Oxford-IIIT Pet dataset root?")
    if image_size < 32:
        raise QBenchError(f"image size must be at least 32 for MobileNetV2, got {image_size}")
    entries = _parse_pet_list(list_file)
    missing = [name for name, _ in entries if not (image_dir / f"{name}.jpg").is_file()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise QBenchError(
            f"{len(missing)} image(s) listed in {list_file} are missing from {image_dir}: {', '.join(missing[:3])}{more}"
        )

    ids = sorted({cid for _, cid in entries})
    label_of = {cid: i for i, cid in enumerate(ids)}
    names: dict[int, str] = {}
    for name, cid in entries:
        breed = _breed_name(name)
        if names.setdefault(cid, breed) != breed:
            raise QBenchError(f"{list_file}: class id {cid} is used for both {names[cid]!r} and {breed!r}")
    labels = np.array([label_of[cid] for _, cid in entries], dtype=np.int64)
    class_names = [names[cid] for cid in ids]

    stat = list_file.stat()
    key = stable_hash(str(root.resolve()), image_size, stat.st_size, stat.st_mtime_ns, len(entries), "pet-v1")
    cache = Path(cache_dir) / f"pet-{image_size}-{key}.npz" if cache_dir else None
    images = None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as npz:
                images = npz["images"]
            if images.shape != (len(entries), image_size, image_size, 3):
                images = None
            else:
                progress(f"using cached decoded Pet images {cache}")
        except Exception:
            progress(f"ignoring unreadable dataset cache {cache}; decoding again")
            images = None
    if images is None:
        images = _decode_pet_images(image_dir, [n for n, _ in entries], image_size, progress)
        if cache is not None:
            buf = io.BytesIO()
            np.savez(buf, images=images)
            with atomic_path(cache) as tmp:
                tmp.write_bytes(buf.getvalue())

    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("pet", images, labels, class_names, train, test, seed, str(root))


def _decode_pet_images(image_dir: Path, names: list[str], size: int, progress: Progress) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(names), size, size, 3), dtype=np.uint8)
    step = max(1, len(names) // 10)
    for i, name in enumerate(names):
        path = image_dir / f"{name}.jpg"
        try:
            with Image.open(path) as img:
                images[i] = _resize_rgb(img, size)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise QBenchError(f"cannot decode image {path}: {exc}") from None
        if (i + 1) % step == 0 or i + 1 == len(names):
            progress(f"decoded {i + 1}/{len(names)} Pet images")
    return images


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    image_size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.2,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress = _quiet,
) -> Dataset:
    if name == "digits":
        return load_digits_dataset(image_size, seed, test_fraction)
    if name == "pet":
        if root is None:
            raise QBenchError("the pet dataset needs --qbench-dataset-root pointing at the Oxford-IIIT Pet directory")
        return load_pet_dataset(root, image_size, seed, test_fraction, cache_dir, progress)
    raise QBenchError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_session_dataset(settings, image_size: int, progress: Progress = _quiet) -> Dataset:
    """The dataset exactly as a session uses it (split, then the profile's subset)."""
    s = settings
    ds = load_dataset(s.dataset, s.dataset_root, image_size, s.seed, s.test_fraction, s.build_dir / "datasets", progress)
    return ds.subset(s.profile.max_train, s.profile.max_test)
