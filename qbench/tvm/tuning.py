"""Tuning qbench's TVM kernels: which schedule choice each kernel should take on this CPU.

Why: :mod:`qbench.tvm.cpu_schedule` picks each kernel's schedule by rule of
thumb (parallel above a size threshold, 16 lanes for int16 products, as many
``vpmaddwd`` output blocks as divide the channels).  Whether a rule of thumb
is right for one kernel on one CPU is a measurement.  The tuner builds the
whole model once per point of :func:`knob_grid` (every kernel scheduled with
that point's choices), times every kernel where it runs, inside the model,
all builds interleaved round by round, and keeps for each kernel the point
that beat the default choices by :data:`MIN_GAIN`, if it still does inside the
build that puts all the kept choices together (timed again, interleaved with
the default build).  The kept schedules go
into a MetaSchedule database (workload + trace records,
:mod:`qbench.tvm.tuning_database`), which
``relax.transform.MetaScheduleApplyDatabase`` applies at build time; kernels
not in it get the default schedule.  Before the database is written, the
tuned build and the default build are timed end to end, interleaved; a
database that does not make every model faster (one-sided Mann-Whitney U,
p < :data:`CHECK_ALPHA`) is not written.

Why not MetaSchedule's own search: its generic design space lost to the hand
schedule on every kernel probed (1.2-2.2x slower on six 224x224 3x3
kernels, 8-44x on three of the 32x32 smoke model's, 16 trials each; both sides timed in one
process whose TVM thread pool had one thread, see :func:`tune`).  The
choices here are few (:func:`knob_grid`), so they are enumerated, not
searched, and timing them inside the model costs one build per choice for
all kernels at once, with each kernel between its real neighbours (caches,
the thread pool waking up or not) rather than alone in a loop.
"""

from __future__ import annotations

import collections
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qbench.tvm.tuning_database import install, open_database, stage

MIN_GAIN = 0.05  # a kernel's tuned schedule must be at least 5 % faster than its default one to be kept
ROUNDS = 15  # interleaved profiling rounds (one inference of every build per round)
CHECK_ROUNDS = 40  # interleaved end-to-end rounds comparing the tuned and the default build
CHECK_ALPHA = 0.01  # the tuned build must be faster with a one-sided Mann-Whitney U p-value under this

Progress = Callable[[str], None]


def knob_grid():
    """The schedule choices the tuner tries, the default (``Knobs()``) first."""
    from qbench.tvm.cpu_schedule import Knobs

    points = [Knobs()]
    for parallel in (False, True):
        for lanes in (None, 16):
            for blocks in (None, 2):
                points.append(Knobs(parallel=parallel, lanes=lanes, output_blocks=blocks))
    points.append(Knobs(taps_in_registers=False))
    points.append(Knobs(parallel=True, taps_in_registers=False))
    for parallel in (None, False, True):
        points.append(Knobs(parallel=parallel, pixels=2))
    points.append(Knobs(output_blocks=2, pixels=2))
    return points


@dataclass
class Kernel:
    """One kernel (a fused PrimFunc, by structure) and its time per inference at each grid point."""

    name: str
    workload: object  # IRModule {"main": the unscheduled PrimFunc}
    seconds: dict[int, float] = field(default_factory=dict)  # grid index -> median seconds per inference

    reverted: bool = False  # its choice lost its gain inside the tuned build
    schedule: object = None  # the s_tir.Schedule of its kept choice (set by _choose)

    @property
    def best(self) -> int:
        return min(self.seconds, key=self.seconds.__getitem__) if self.seconds else 0

    @property
    def kept(self) -> bool:
        return (
            not self.reverted
            and 0 in self.seconds
            and self.best != 0
            and self.seconds[self.best] < (1 - MIN_GAIN) * self.seconds[0]
        )


@dataclass
class TuningRun:
    kernels: dict[int, Kernel] = field(default_factory=dict)  # structural hash -> kernel
    points: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    default_ms: list[float] = field(default_factory=list)  # end-to-end medians, one per model
    tuned_ms: list[float] = field(default_factory=list)
    p_values: list[float] = field(default_factory=list)  # one-sided Mann-Whitney U: tuned faster
    written: int | None = None  # kernels in the database written; None when nothing was written

    def summary(self) -> str:
        """What was measured and kept, for a person: one line per kept kernel, then the totals."""
        grid = knob_grid()
        kept = sorted((k for k in self.kernels.values() if k.kept), key=lambda k: k.seconds[k.best] - k.seconds[0])
        lines = [
            f"[qbench] {len(self.kernels)} kernels x {self.points} schedule choices, "
            f"timed inside the model in {self.seconds:.0f} s"
            + (" (time budget spent)" if self.stopped_early else "")
            + f"; {len(kept)} kernels faster than their default schedule by at least {MIN_GAIN:.0%}"
            + f", in the build of that choice and in the tuned build ({sum(k.reverted for k in self.kernels.values())} were not):"
        ]
        for k in kept:
            lines.append(
                f"  {k.name[:64]}: {_us(k.seconds[0])} -> {_us(k.seconds[k.best])} per inference ({_name(grid[k.best])})"
            )
        for default, tuned, p in zip(self.default_ms, self.tuned_ms, self.p_values, strict=True):
            lines.append(
                f"[qbench] end to end, {CHECK_ROUNDS} interleaved rounds: default schedule {default:.3f} ms, "
                f"tuned {tuned:.3f} ms ({tuned / default:.2f}x, one-sided Mann-Whitney U p = {p:.2g})"
            )
        return "\n".join(lines)


def fused_module(mod, target):
    """The module the kernels come from: a Relax module after legalization and fusion, before scheduling."""
    import tvm

    from qbench.tvm.cpu_schedule import fusion_passes

    with target:
        return tvm.transform.Sequential(fusion_passes(target))(mod)


def kernels_of(fused) -> dict[str, tuple[int, object]]:
    """Kernel name -> (structural hash, workload) for every PrimFunc ``fused``'s ``main`` calls (fusion
    leaves the integer lowering's unfused kernels in the module, unused)."""
    import tvm
    import tvm_ffi
    from tvm import relax, tirx

    called = {gv.name_hint for gv in relax.analysis.all_global_vars(fused["main"])}
    found = {}
    for gv, func in fused.functions.items():
        if isinstance(func, tirx.PrimFunc) and gv.name_hint in called:
            workload = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
            found[gv.name_hint] = (tvm_ffi.structural_hash(workload), workload)
    return found


def tune(
    modules: list,
    out_dir: Path,
    target,
    max_points: int | None = None,
    time_budget_s: float | None = None,
    progress: Progress = print,
) -> TuningRun:
    """Tune every kernel of the Relax ``modules`` (as the TVM variants compile them) over
    :func:`knob_grid` and write the kept kernels to ``out_dir`` (merged with what it holds).
    TVM's thread pool must already have the target's core count (``TVM_NUM_THREADS``, read when the
    pool starts; unset, TVM takes half the hardware threads: 1 of 2 here)."""
    import tvm
    from scipy.stats import mannwhitneyu
    from tvm import relax

    from qbench.tvm.cpu_schedule import compile_module, cpu_pipeline

    threads = int(target.attrs.get("num-cores", 1))
    pool = int(tvm.get_global_func("runtime.NumThreads")())
    if pool != threads:
        progress(
            f"tune: warning: TVM's thread pool has {pool} threads, the target {threads} cores: set TVM_NUM_THREADS={threads} "
            "before TVM starts (qbench tune does), or parallel kernels are timed on the wrong number of cores"
        )
    started = time.monotonic()
    run = TuningRun()
    names = []  # per module: kernel name -> structural hash
    for mod in modules:
        found = kernels_of(fused_module(mod, target))
        names.append({name: key for name, (key, _) in found.items()})
        for name, (key, workload) in found.items():
            run.kernels.setdefault(key, Kernel(name, workload))
    grid = knob_grid()[: max_points or None]
    inputs = [_example_input(mod) for mod in modules]
    builds = []  # per grid point: one VM per module
    best = None  # (end-to-end ms summed over the modules, grid index)
    for index, knobs in enumerate(grid):
        if time_budget_s and index > 1 and time.monotonic() - started > time_budget_s:
            run.stopped_early = True
            progress(f"tune: time budget of {time_budget_s:.0f} s spent after {index} of {len(grid)} schedule choices")
            break
        vms = [_vm(compile_module(mod, target, cpu_pipeline(target, knobs=knobs)), relax) for mod in modules]
        builds.append(vms)
        ms = sum(_quick_ms(vm, x) for vm, x in zip(vms, inputs, strict=True))
        best = min(best or (ms, index), (ms, index))
        progress(
            f"tune: {index + 1}/{len(grid)} schedule choices built and timed, {time.monotonic() - started:.0f} s; "
            f"{_name(knobs)}: {ms:.3f} ms end to end; best so far {best[0]:.3f} ms ({_name(grid[best[1]])})"
        )
    run.points = len(builds)
    progress(f"tune: timing {len(run.kernels)} kernels in {run.points} builds, {ROUNDS} interleaved rounds")
    per_round = _profile(builds, inputs, names)
    for (index, key), samples in per_round.items():
        kernel = run.kernels[key]
        kernel.seconds[index] = sorted(samples)[len(samples) // 2]
    _choose(run, grid, target)

    def build_tuned(staging):
        database = open_database([staging])
        pipeline = cpu_pipeline(target, database=database)
        return [_vm(compile_module(mod, target, pipeline), relax) for mod in modules]

    staging = _stage(run, target, out_dir)
    try:
        tuned = build_tuned(staging)
        # the choices were timed each in a build where every kernel made the same choice; next to the
        # other kernels' own choices a kernel can lose what it gained (the thread pool asleep or not)
        progress(f"tune: timing the kept kernels inside the tuned build, {ROUNDS} rounds interleaved with the default build")
        again = _profile([builds[0], tuned], inputs, names)
        for key, kernel in run.kernels.items():
            if not (kernel.kept and (0, key) in again and (1, key) in again):
                continue
            kernel.reverted = statistics.median(again[(1, key)]) >= (1 - MIN_GAIN) * statistics.median(again[(0, key)])
        reverted = sum(1 for k in run.kernels.values() if k.reverted)
        if reverted:
            progress(f"tune: {reverted} kernels were not faster inside the tuned build: they keep the default schedule")
            shutil.rmtree(staging, ignore_errors=True)
            staging = _stage(run, target, out_dir)
            tuned = build_tuned(staging)
        progress(f"tune: checking the tuned build against the default one, {CHECK_ROUNDS} interleaved rounds")
        for default_fn, tuned_fn, x in zip(builds[0], tuned, inputs, strict=True):
            default_s, tuned_s = _ab(default_fn, tuned_fn, x)
            run.default_ms.append(statistics.median(default_s) * 1e3)
            run.tuned_ms.append(statistics.median(tuned_s) * 1e3)
            run.p_values.append(float(mannwhitneyu(tuned_s, default_s, alternative="less").pvalue))
        if all(p < CHECK_ALPHA for p in run.p_values):
            run.written = install(staging, out_dir)
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    run.seconds = time.monotonic() - started
    return run


def _vm(executable, relax):
    import tvm

    return relax.VirtualMachine(executable, tvm.cpu())


def _quick_ms(vm, x, calls: int = 10) -> float:
    """Median end-to-end milliseconds of a few calls (progress output only, not a tuning decision)."""
    vm["main"](x)
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        vm["main"](x)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def _name(knobs) -> str:
    """``Knobs(parallel=True)`` -> ``parallel=True``; the default choices -> ``default``."""
    from qbench.tvm.cpu_schedule import Knobs

    changed = [f"{n}={v}" for n, v in vars(knobs).items() if v != getattr(Knobs(), n)]
    return ", ".join(changed) or "default"


def _example_input(mod):
    """A random input of the model's input shape and dtype (timing does not depend on the values)."""
    import numpy as np
    import tvm

    ty = mod["main"].params[0].ty
    shape, dtype = [int(d) for d in ty.shape], str(ty.dtype)
    rng = np.random.default_rng(0)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    else:
        data = rng.random(shape).astype(dtype)
    return tvm.runtime.tensor(data, tvm.cpu())


def _profile(builds, inputs, names) -> dict:
    """(grid index, kernel hash) -> seconds per inference in each round, every build run once per round."""
    samples = collections.defaultdict(list)
    for builds_of_point in builds:
        for vm, x in zip(builds_of_point, inputs, strict=True):
            vm["main"](x)  # warm-up
    for _ in range(ROUNDS):
        for index, builds_of_point in enumerate(builds):
            for vm, x, kernel_names in zip(builds_of_point, inputs, names, strict=True):
                spent = collections.defaultdict(float)
                started = {}

                def instrument(_func, name, before_run, _ret, *_args, spent=spent, started=started):
                    if before_run:
                        started[name] = time.perf_counter()
                    elif name in started:
                        spent[name] += time.perf_counter() - started.pop(name)
                    return 0

                vm.set_instrument(instrument)
                vm["main"](x)
                vm.set_instrument(None)
                per_kernel = collections.defaultdict(float)
                for name, seconds in spent.items():
                    if name in kernel_names:
                        per_kernel[kernel_names[name]] += seconds
                for key, seconds in per_kernel.items():
                    samples[(index, key)].append(seconds)
    return samples


def _ab(default_vm, tuned_vm, x) -> tuple[list[float], list[float]]:
    """End-to-end seconds of two builds, interleaved call by call."""
    timings = ([], [])
    for vm in (default_vm, tuned_vm):
        vm["main"](x)
    for _ in range(CHECK_ROUNDS):
        for i, vm in enumerate((default_vm, tuned_vm)):
            started = time.perf_counter()
            vm["main"](x)
            timings[i].append(time.perf_counter() - started)
    return timings


def _choose(run: TuningRun, grid, target=None) -> None:
    """Schedule each kept kernel with its best choice, once; a choice that schedules the kernel as
    the default does is dropped (its timing was the default's, measured again) and the next best
    considered."""
    import tvm
    import tvm_ffi

    from qbench.tvm.cpu_schedule import Knobs, schedule_kernel

    for kernel in run.kernels.values():
        if not kernel.kept:
            continue
        default = tvm.s_tir.Schedule(kernel.workload)
        schedule_kernel(default, Knobs(), target=target)
        while kernel.kept:
            chosen = tvm.s_tir.Schedule(kernel.workload)
            scheduled = schedule_kernel(chosen, grid[kernel.best], target=target)
            if scheduled and not tvm_ffi.structural_equal(chosen.mod, default.mod):
                kernel.schedule = chosen
                break
            del kernel.seconds[kernel.best]


def _stage(run: TuningRun, target, out_dir: Path) -> Path:
    """This run's kept kernels (with the schedules :func:`_choose` made) staged as a database for ``out_dir``."""
    records = [(k.workload, k.schedule.trace, k.seconds[k.best]) for k in run.kernels.values() if k.kept]
    measured = {key for key, kernel in run.kernels.items() if kernel.seconds}
    return stage(records, target, out_dir, measured)


def _us(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e6:.1f} us"
