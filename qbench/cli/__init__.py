"""``qbench <command>`` (or ``python -m qbench.cli <command>``): every command of qbench in one place.

The commands sit on top of the packages and stay thin: each parses its
options and calls the packages below (the import-linter contract in
``pyproject.toml`` keeps it so):

* ``prepare``            build the model and variants into the cache (:mod:`qbench.measure.prepare`)
* ``gatecheck``          the gate's false-alarm and detection rates here (:mod:`qbench.gate.gatecheck`)
* ``tune``               tune the TVM variants' kernels for this CPU (:mod:`qbench.cli.tune`)
* ``retrain-reference``  retrain the committed reference model (:mod:`qbench.cli.retrain_reference`)
* ``kenning-sized``      a Kenning-sized model and a Pet-shaped tree (:mod:`qbench.cli.kenning_sized`)
* ``fleet``              the benchmark on every worker of a Dask scheduler (:mod:`qbench.cli.fleet`)
* ``fleet-worker``       this machine's quiet Dask worker for the fleet (:mod:`qbench.cli.fleet_worker`)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "prepare": "qbench.measure.prepare",
    "gatecheck": "qbench.gate.gatecheck",
    "tune": "qbench.cli.tune",
    "retrain-reference": "qbench.cli.retrain_reference",
    "kenning-sized": "qbench.cli.kenning_sized",
    "fleet": "qbench.cli.fleet",
    "fleet-worker": "qbench.cli.fleet_worker",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: qbench <command> [options]  (or python -m qbench.cli <command>)\n\ncommands: " + ", ".join(COMMANDS))
        return 0 if argv else 2
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"qbench: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name]).main(argv[1:])
