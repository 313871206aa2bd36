"""pytest plugin for qbench's own tests: says at the end whether the pytest process imported TensorFlow.

A run whose model is cached (or a user's, whose shapes its config states) leaves TensorFlow to the
workers; importing it in the pytest process as well costs 5-6 s a run, which CI pays in every
end-to-end test (tests/test_gate_run.py asserts the line).
"""

import sys

LINE = "qbench test probe: TensorFlow imported in the pytest process: "


def pytest_unconfigure(config):
    print(LINE + ("yes" if "tensorflow" in sys.modules or "keras" in sys.modules else "no"))
