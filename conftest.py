"""Loads the qbench pytest plugin for ``pytest benchmarks`` and ``pytest tests``."""

pytest_plugins = ["qbench.plugin"]
