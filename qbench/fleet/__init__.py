"""One command, many machines: the benchmark on every worker of a Dask scheduler, merged into one report.

``pytest benchmarks --qbench-fleet tcp://HOST:8786`` (or ``qbench fleet
tcp://HOST:8786``) builds what does not depend on the CPU once on the
driver, ships it to every Dask worker that offers the ``qbench`` resource,
and runs the same pytest benchmark there, one run at a time per machine
(:mod:`qbench.fleet.on_worker`), all machines in parallel
(:mod:`qbench.fleet.driver`).  Each machine measures in its own isolated
workers and is gated against its own stored run or same-job base; the
driver merges what came back (:mod:`qbench.fleet.merged_report`).

Dask distributed is the transport and the scheduler: qbench adds no
protocol of its own.
"""
