"""A generated Oxford-IIIT-Pet-shaped tree: the real dataset cannot be downloaded here.

It keeps the real tree's layout and conventions (``images/<Breed>_<n>.jpg``,
``annotations/list.txt`` with its ``#`` header, cats capitalised, dogs lower
case) so the Pet loader and the Kenning-sized benchmark
(:mod:`qbench.cli.kenning_sized`) run on it; each breed gets its own dominant
colour, so a model can learn it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PET_HEADER = """#Image CLASS-ID SPECIES BREED ID
#ID: 1:37 Class ids
#SPECIES: 1:Cat 2:Dog
#BREED ID: 1-25:Cat 1:12:Dog
#All images with 1st letter as captial are cat images
#images with small first letter are dog images
"""

# (name, class id, species, breed id), following the Oxford-IIIT Pet conventions
PET_BREEDS = [("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("Bengal", 6, 1, 2)]


def pet_breeds(n: int) -> list[tuple[str, int, int, int]]:
    """``n`` made-up breeds in the Pet conventions (cats capitalised, dogs lower case), class ids 1..n."""
    out = []
    for k in range(n):
        cat = k % 2 == 0
        name = f"Catbreed{k:02d}" if cat else f"dog_breed{k:02d}"
        out.append((name, k + 1, 1 if cat else 2, k // 2 + 1))
    return out


def make_pet_tree(root: Path, per_class: int = 12, size: int = 40, seed: int = 0, breeds=None) -> Path:
    """A small Oxford-IIIT-Pet-shaped tree: ``images/<Breed>_<n>.jpg`` + ``annotations/list.txt``.

    Each breed gets a distinct dominant colour plus noise, so a model can learn it.
    ``breeds`` defaults to three real ones; :func:`pet_breeds` makes 37 for a full-sized head.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    lines = [PET_HEADER]
    for k, (breed, class_id, species, breed_id) in enumerate(breeds or PET_BREEDS):
        for n in range(1, per_class + 1):
            img = rng.integers(0, 90, size=(size, size + 8 * (k % 5), 3))  # non-square, varying sizes
            img[..., k % 3] += 160 - 3 * k
            name = f"{breed}_{n}"
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{name}.jpg", quality=90)
            lines.append(f"{name} {class_id} {species} {breed_id}\n")
    (root / "annotations" / "list.txt").write_text("".join(lines))
    return root
