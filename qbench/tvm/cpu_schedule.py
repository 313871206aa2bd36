"""A default CPU schedule for TVM's fused kernels: inline, parallelize, vectorize over channels.

Why: Relax's CPU pipeline legalizes and fuses ops but schedules nothing, and
DLight's CPU rules cover only GEMV and reductions, so every fused conv2d +
requantize kernel ran as scalar loops with each epilogue op writing its own
temporary.  This DLight rule does what a hand-written NHWC schedule would do
first, for every kernel: inline the elementwise producers and consumers into
one loop nest, put the reduction loops outside the innermost spatial loop
(the output channel, contiguous in NHWC) and vectorize that, and run the outer
spatial loops in parallel when the kernel is big enough to pay for it.  It is a starting point that a tuned schedule
(MetaSchedule) can replace kernel by kernel.

The 1x1 (vpmaddwd) kernels, and the other convolutions when they run in
parallel, requantize each block of accumulators inside the loop that computes
it, instead of writing a layer of int32 to memory first; with that, and with
the intrinsic free of temporaries (see :mod:`qbench.tvm.avx2_int8_kernels`), no
kernel calls TVM's workspace allocator per pixel (``tests/test_tvm_cpu_schedule.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

VECTOR_LANES = 8  # int32 / float32 lanes in an AVX2 register
# int32 lanes of a requantize epilogue on a target with AVX-512 (a zmm register).  Its 64-bit products
# fill two zmm registers per 16 lanes instead of two ymm per 8: the 64x64 int8 model on one thread
# 174 -> 167 us (tvm-host-int8, this Zen 4 VM, three interleaved runs each).  The other loops keep 8
# (16 gained nothing) and the int16 products 16 (32 lanes were 6 % slower).
EPILOGUE_LANES_AVX512 = 16
# Below this many loop iterations a kernel runs on one thread.  It was 2**21 (every 64x64 kernel serial)
# while a parallel body still called TVM's workspace allocator per pixel; without that, 2**15 took the
# 64x64 int8 model from 0.238 to 0.189 ms, tvm-avx2-fp32 from 0.321 to 0.206 ms, 224x224 int8 from
# 5.37 to 4.94 ms (interleaved, 2 threads); 2**13-2**16 were within noise of each other.
MIN_PARALLEL_ITERATIONS = 1 << 15
# The same on a target with AVX-512, whose kernels do a loop iteration's work in fewer instructions
# (16-lane epilogues, vpdpbusd): 2**15 left the 64x64 tvm-host-int8 slower on two threads than on one
# (151 against 131 us); with 2**18 it took 0.87-0.90x on two threads (2**17, 2**19 and all-serial
# within 2 % of it), the 224x224 model 1.01x (neutral), where tvm-avx2-int8 at 64x64 took 1.06x
# (so AVX2 keeps 2**15).  This Zen 4 VM, both builds interleaved in one process, 30 rounds each.
MIN_PARALLEL_ITERATIONS_AVX512 = 1 << 18
STACK_BYTES = 1024  # TVM's kMaxStackAlloca: a larger temporary is a TVMBackendAllocWorkspace call
PADDING_UNROLL = 8  # a padded copy's channel loop is unrolled up to this many channels
ELEMENTWISE_DISCOUNT = 8  # elementwise kernels go parallel from 2**12 iterations


@dataclass(frozen=True)
class Knobs:
    """One point of the schedule's design space.  ``None`` leaves a choice to the heuristics below, so
    ``Knobs()`` is the default schedule; :mod:`qbench.tvm.tuning` measures the other points."""

    parallel: bool | None = None  # run the outer spatial loops on the thread pool
    lanes: int | None = None  # vector width of the innermost channel loop (not for vpmaddwd blocks)
    output_blocks: int | None = None  # vpmaddwd blocks: 8-channel output blocks per input pair
    taps_in_registers: bool | None = None  # KxK int16 products: accumulate across the taps in registers
    pixels: int | None = None  # vpmaddwd blocks: neighbouring pixels sharing each weight load
    epilogue_in_loop: bool | None = None  # reductions: requantize accumulators in the loop that computes them


def epilogue_lanes(target) -> int:
    """int32 lanes to vectorize a requantize epilogue with on ``target`` (None: AVX2's 8)."""
    if target is None:
        return VECTOR_LANES
    from tvm.target import codegen

    return EPILOGUE_LANES_AVX512 if codegen.llvm_cpu_has_features(["avx512f"], target) else VECTOR_LANES


def parallel_threshold(target) -> int:
    """Loop iterations from which a kernel runs on the thread pool, on ``target`` (None: AVX2)."""
    return MIN_PARALLEL_ITERATIONS_AVX512 if epilogue_lanes(target) == EPILOGUE_LANES_AVX512 else MIN_PARALLEL_ITERATIONS


def schedule_kernel(sch, knobs: Knobs = Knobs(), min_parallel_iterations: int | None = None, target=None) -> bool:
    """Schedule one fused kernel in place (inline, order loops, vectorize, maybe parallel) for
    ``target`` (its vector width; None: AVX2); False when the kernel is not a loop nest this schedule
    understands (then ``sch`` is left as it was).  ``min_parallel_iterations`` defaults to the
    target's :func:`parallel_threshold`."""
    from tvm import tirx
    from tvm.s_tir.dlight import normalize_prim_func, try_inline

    from qbench.tvm import amx_int8_kernels as amx
    from qbench.tvm import avx2_int8_kernels as avx2
    from qbench.tvm import vnni_int8_kernels as vnni

    infos = normalize_prim_func(sch)
    if infos is None:
        return False
    lanes_out = epilogue_lanes(target)
    if min_parallel_iterations is None:
        min_parallel_iterations = parallel_threshold(target)

    def name(block_rv) -> str:
        return sch.get(block_rv).name_hint

    def dot_block(block_rv):
        """The kernel module of a tensorized dot-product block (vpmaddwd, vpdpbusd or tdpbusd), or None."""
        n = name(block_rv)
        return next((m for m in (avx2, vnni, amx) if n.startswith(m.BLOCK)), None)

    # a vpmaddwd / vpdpbusd block must read its data from a buffer: keep its producers out of inlining
    keep = set()
    for info in infos:
        if dot_block(info.block_rv):
            keep.add(name(info.block_rv))
            keep.update(name(b) for b in sch.get_producers(info.block_rv))
    kept = [i for i in infos if name(i.block_rv) in keep]
    # vpmaddwd blocks first: their epilogues (requantize ...) move into their loop nests, see below
    infos = kept + try_inline(sch, [i for i in infos if name(i.block_rv) not in keep])
    attached = set()
    for info in infos:
        kinds, block = info.dom_kind(), info.block_rv
        if name(block) in attached:
            continue
        loops = sch.get_loops(block)
        if "O" in kinds or len(loops) != len(kinds):
            continue
        spatial = [it.loop_rv for it in info.iters if it.kind == "S"]  # block-iter order: channels last
        reduce = [it.loop_rv for it in info.iters if it.kind == "R"]
        if not spatial:
            continue
        if name(block) == avx2.PAD_BLOCK and name(block) in keep and not reduce:  # a dot-product kernel's own copy
            _schedule_padding(sch, spatial[-1])
            continue
        inner, outer = spatial[-1], spatial[:-1]
        sch.reorder(*outer, *reduce, inner)
        work = _product([sch.get(loop).extent for loop in loops])
        # an elementwise iteration (a requantize) costs about what a reduction's whole inner step does
        threshold = min_parallel_iterations if reduce else min_parallel_iterations // ELEMENTWISE_DISCOUNT
        parallel = knobs.parallel if knobs.parallel is not None else work is not None and work >= threshold
        if (kernels := dot_block(block)) is not None:
            if kernels is amx and knobs.parallel is None:  # a tile step does many vector steps' work
                parallel = work is not None and work >= threshold * amx.PARALLEL_SCALE
            consumers = sch.get_consumers(block)
            attach = None
            if knobs.epilogue_in_loop is not False:

                def attach(loop, consumers=consumers):
                    attached.update(_attach_epilogue(sch, consumers, loop, lanes_out))

            kernels.schedule_block(sch, info, parallel, knobs.output_blocks, knobs.pixels, attach)
            continue
        if outer and parallel:
            outer = [sch.fuse(*outer)]
            sch.parallel(outer[0])
        # KxK / float convolutions: the epilogue in the loop nest only where the kernel runs in parallel
        # (at 64x64, all serial, it was 5 % slower there; at 224x224 2-4 % faster, interleaved runs)
        in_loop = knobs.epilogue_in_loop if knobs.epilogue_in_loop is not None else parallel
        consumers = sch.get_consumers(block) if reduce and in_loop else []
        extent = sch.get(inner).extent
        spatial_conv = name(block).startswith(avx2.SPATIAL_BLOCK)
        # int16 products: 16 lanes fill a register (vpmullw); an elementwise kernel (a requantize not in a
        # loop nest) the epilogue's lanes: 16 on AVX-512, where with the paired products the 64x64 model
        # took 0.955x (untuned; 224x224 0.99x), one thread, interleaved; everything else 8
        width = knobs.lanes or (2 * VECTOR_LANES if spatial_conv else VECTOR_LANES if reduce else lanes_out)
        if isinstance(extent, tirx.IntImm) and int(extent) % width:
            width = VECTOR_LANES
        if isinstance(extent, tirx.IntImm) and int(extent) >= width and int(extent) % width == 0:
            channel_blocks, lanes = sch.split(inner, factors=[None, width])
            taps_in_registers = knobs.taps_in_registers if knobs.taps_in_registers is not None else spatial_conv
            if reduce and spatial_conv and taps_in_registers:
                # KxK taps: one register of accumulators per channel block across the taps.  Not for
                # Relax's float convolutions: there it made tvm-avx2-fp32 slower (0.285 -> 0.360 ms at
                # 64x64, 10.7 -> 15.2 ms at 224x224, one run each), the weight rows read with a stride
                sch.reorder(channel_blocks, *reduce, lanes)
                attached.update(_attach_epilogue(sch, consumers, channel_blocks, lanes_out))
                consumers = []
            sch.vectorize(lanes)
        if consumers and outer and _fits_on_the_stack(extent):
            attached.update(_attach_epilogue(sch, consumers, outer[-1], lanes_out))
        if reduce:
            sch.decompose_reduction(block, reduce[0])
    return True


def _schedule_padding(sch, channels) -> None:
    """The padded copy a KxK dot-product kernel reads (:func:`~qbench.tvm.avx2_int8_kernels.grouped_conv_prim_func`):
    serial, pixel by pixel, its few channels unrolled.  Run in parallel like any elementwise loop, its
    pixels were one fused loop, each iteration dividing its index back into row and column: 61 % of
    the 64x64 stem kernel's samples (``perf``), 9 us of the model's 135 on one thread; this way the
    model took 0.92x (one thread, both builds interleaved in one process, 30 rounds)."""
    from tvm import tirx

    extent = sch.get(channels).extent
    if isinstance(extent, tirx.IntImm) and int(extent) <= PADDING_UNROLL:
        sch.unroll(channels)


def _attach_epilogue(sch, consumers, loop, lanes: int = VECTOR_LANES) -> list[str]:
    """Compute a convolution's or matmul's elementwise ``consumers`` (its requantize epilogue) under
    ``loop`` (a pixel or a block of channels), vectorized over channels (``lanes`` where they divide
    the channels, else 8), so the int32 accumulators
    are requantized while they are in registers or L1; returns the consumers' names.  Without it
    the accumulators of a whole layer (4.8 MB at 112x112x96) were one workspace allocation per call
    and went through memory and back before the epilogue read them."""
    from tvm import tirx

    names = []
    for consumer in consumers:
        try:
            sch.reverse_compute_at(consumer, loop)
        except Exception:  # noqa: BLE001 - TVM's ScheduleError: this consumer stays a loop nest of its own
            continue
        inner = sch.get_loops(consumer)[-1]
        extent = sch.get(inner).extent
        width = next((w for w in (lanes, VECTOR_LANES) if isinstance(extent, tirx.IntImm) and int(extent) % w == 0), None)
        if width:
            sch.vectorize(sch.split(inner, factors=[None, width])[1])
        names.append(sch.get(consumer).name_hint)
    return names


def _fits_on_the_stack(channels) -> bool:
    """Whether one pixel's int32 accumulators stay under TVM's stack limit (1 KiB): above it, each
    pixel's buffer would be a workspace allocation, worse than one per layer."""
    from tvm import tirx

    return isinstance(channels, tirx.IntImm) and int(channels) * 4 < STACK_BYTES


def _product(extents):
    from tvm import tirx

    total = 1
    for e in extents:
        if not isinstance(e, tirx.IntImm):
            return None
        total *= int(e)
    return total


def schedule_rule(min_parallel_iterations: int | None = None, knobs: Knobs = Knobs()):
    """:func:`schedule_kernel` with the same ``knobs`` for every kernel, as a DLight rule (a class
    instance); built lazily so importing qbench does not import TVM."""
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight import ScheduleRule

    class InlineParallelVectorize(ScheduleRule):
        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc):
                return None
            sch = s_tir.Schedule(func)
            return sch if schedule_kernel(sch, knobs, min_parallel_iterations, target) else None

    return InlineParallelVectorize()


def fusion_passes(target) -> list:
    """Relax's CPU passes up to and including operator fusion: what the tuner extracts kernels from."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    return cpu_generic.library_dispatch_passes(target) + cpu_generic.legalize_passes(target)


def compile_module(mod, target, relax_pipeline):
    """``tvm.compile`` with ``relax_pipeline`` (:func:`cpu_pipeline`) and qbench's TIR pipeline
    (:mod:`qbench.tvm.paired_products`): every build that is run or timed goes through here, so the
    tuner times what a build runs."""
    import tvm

    from qbench.tvm import paired_products

    return tvm.compile(mod, target=target, relax_pipeline=relax_pipeline, tir_pipeline=paired_products.register())


def cpu_pipeline(
    target,
    min_parallel_iterations: int | None = None,
    database=None,
    applied: dict | None = None,
    knobs: Knobs = Knobs(),
):
    """Relax's CPU pipeline: fusion, then each kernel's schedule from ``database`` (a MetaSchedule
    database, see :mod:`qbench.tvm.tuning`) where it has one and :func:`schedule_rule` with
    ``knobs`` for the rest.
    ``applied``, if given, receives how many kernels came from the database (key ``tuned``)."""
    import tvm
    from tvm import relax, tirx
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    from tvm.s_tir import dlight

    @tvm.transform.module_pass(opt_level=0)
    def count_tuned(mod, _ctx):
        if applied is not None:
            kernels = [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc) and f.attrs is not None]
            applied["tuned"] = sum(1 for f in kernels if "tirx.is_scheduled" in f.attrs)
        return mod

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod, _ctx):
        with target:  # MetaScheduleApplyDatabase reads the target when it is made
            tuned = [relax.transform.MetaScheduleApplyDatabase(), count_tuned] if database is not None else []
            passes = tvm.transform.Sequential(
                fusion_passes(target)
                + tuned
                + [dlight.ApplyDefaultSchedule(schedule_rule(min_parallel_iterations, knobs))]
                + cpu_generic.dataflow_lower_passes(target)
                + cpu_generic.finalize_passes(target)
            )
            if database is None:
                return passes(mod)
            with database:
                return passes(mod)

    return pipeline
