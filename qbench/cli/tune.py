"""``qbench tune``: tune the TVM variants' kernels for your model and this CPU.

Why: the committed tuning database (``qbench/tvm/tuning_db/``) covers the
224x224 Kenning-sized int8 model's kernels (the tuner's end-to-end check
refused the default model's and the fp32 ones); a model of other shapes gets
the default schedule for every kernel it does not share.
This command measures the schedule choices of every kernel of the ``.tflite``
models the TVM variants compile (by default the ones already built under
``build/variants/``), and stores the kernels that beat the default schedule
in ``build/tvm-tuning/``, which the next run's TVM builds apply (the TVM
variants' cache key includes it, so they are rebuilt).  Nothing else tunes:
the benchmarks and ``.ci/run`` only read databases.

    pytest benchmarks                      # builds the .tflite artifacts
    qbench tune                  # tunes their kernels (minutes per model)
    qbench tune --target host    # the same for tvm-host-int8 (this CPU's name and VNNI kernels)
    pytest benchmarks --benchmark-compare  # TVM variants rebuilt with the tuned kernels
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from qbench.core.errors import QBenchError

TUNED_SOURCES = ("tflite-int8", "tflite-fp32")  # what the TVM variants compile


def built_models(build_dir: Path) -> list[Path]:
    """The ``.tflite`` artifacts the TVM variants compile, as built under ``build_dir/variants``: the
    newest of each kind per model (older keys are stale builds)."""
    found = []
    for model_dir in sorted(p for p in (build_dir / "variants").glob("*") if p.is_dir()):
        for source in TUNED_SOURCES:
            built = sorted(model_dir.glob(f"{source}-*.tflite"), key=lambda p: p.stat().st_mtime)
            found += built[-1:]
    return found


def main(argv: list[str] | None = None) -> int:
    from qbench.core.machine import usable_cores
    from qbench.tvm.tuning import knob_grid

    parser = argparse.ArgumentParser(prog="qbench tune", description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", type=Path, help=".tflite files (default: the int8 and fp32 .tflite built under BUILD_DIR)"
    )
    parser.add_argument("--build-dir", type=Path, default=Path("build"), help="qbench's build directory (default: build)")
    parser.add_argument("--output", type=Path, help="database directory to write (default: BUILD_DIR/tvm-tuning)")
    parser.add_argument(
        "--trials", type=int, help=f"try at most this many schedule choices per kernel (default: all {len(knob_grid())})"
    )
    parser.add_argument("--time-budget", type=float, default=1800.0, help="stop after this many seconds (default: 1800)")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="TVM threads (default: the usable cores)")
    parser.add_argument(
        "--target",
        choices=("avx2", "host"),
        default="avx2",
        help="tune for tvm-avx2-int8's target (core-avx2, default) or tvm-host-int8's (this CPU, its VNNI kernels)",
    )
    args = parser.parse_args(argv)
    try:
        return _tune(args)
    except QBenchError as exc:
        print(f"qbench tune: error: {exc}", file=sys.stderr)
        return 2


def _tune(args) -> int:
    # read when TVM's thread pool starts; unset, TVM takes half the hardware threads (1 of 2 here)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import tvm

    from qbench.backends.tvm import has_amx_tiles, has_byte_permutes, relax_module, target_for
    from qbench.tvm.tuning import tune
    from qbench.tvm.tuning_database import user_database

    if args.trials is not None and args.trials < 2:
        raise QBenchError(f"--trials must be at least 2 (the default schedule and one other), got {args.trials}")
    if args.time_budget <= 0:
        raise QBenchError(f"--time-budget must be positive, got {args.time_budget}")
    if args.threads < 1:
        raise QBenchError(f"--threads must be at least 1, got {args.threads}")
    paths = args.models or built_models(args.build_dir)
    if not paths:
        raise QBenchError(
            f"no .tflite artifacts under {args.build_dir / 'variants'}: run `pytest benchmarks` first, or name .tflite files"
        )
    out_dir = args.output or user_database(args.build_dir)
    # a record carries its target; a build applies only the records tuned for its own (tuning_database)
    spec, vnni = target_for(args.threads, host=args.target == "host")
    target = tvm.target.Target(spec)
    started, written = time.monotonic(), 0
    for path in paths:  # one model at a time: each must get faster for its kernels to be kept
        try:
            tflite_bytes = path.read_bytes()
        except OSError as exc:
            raise QBenchError(f"cannot read {path}: {exc.strerror or exc}") from None
        budget = args.time_budget - (time.monotonic() - started)
        if budget <= 0:
            print(f"[qbench] time budget spent: {path} not tuned")
            continue
        print(f"[qbench] tuning {path} (TVM target {target})", flush=True)
        module = relax_module(tflite_bytes, vnni, has_byte_permutes(spec), has_amx_tiles(spec))[0]
        run = tune([module], out_dir, target, args.trials, budget, progress=_progress)
        print(run.summary())
        if run.written is None:
            print(f"[qbench] {path.name}: the tuned build was not faster end to end, so nothing of it was written")
        else:
            written += 1
            print(f"[qbench] {path.name}: wrote {out_dir} ({run.written} kernels in it now)")
    if not written:
        print(f"[qbench] {out_dir} unchanged")
        return 1
    print(f"[qbench] the next run's TVM variants are built with {out_dir}")
    return 0


def _progress(message: str) -> None:
    print(f"[qbench] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
