"""Building blocks for test-only variants: a tiny artifact and a runner with fixed scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qbench.backends import Runner


def build_stub(ctx, out) -> dict:
    """A few bytes of JSON: the input shape and class count the stub runner reports."""
    info = {"image_size": ctx.dataset.image_size, "num_classes": ctx.dataset.num_classes}
    out.write_text(json.dumps(info))
    return info


class StubRunner(Runner):
    """Uniform class scores; ``work()`` is what each variant does per call."""

    def __init__(self, name, path):
        info = json.loads(Path(path).read_text())
        self.variant = name
        size = info["image_size"]
        self.input_shape = (1, size, size, 3)
        self._scores = np.full((1, info["num_classes"]), 1.0 / info["num_classes"], np.float32)

    def work(self) -> None:
        pass

    def invoke(self, prepared):
        self.work()
        return self._scores
