"""The default CPU schedule (:mod:`qbench.tvm.cpu_schedule`): what its generated code must not do.

Why: a kernel can compute the right numbers and still spend most of its time
in TVM's runtime.  A temporary inside a loop body is lowered to a
``TVMBackendAllocWorkspace`` / ``TVMBackendFreeWorkspace`` pair per iteration
(inside a parallel body even when it is a few bytes), and an intermediate the
size of a whole layer is one more allocation per call and a round trip
through memory.  Both happened in the 1x1 kernels: per pixel, the vpmaddwd
intrinsic's two temporaries, and the int32 accumulators of a whole layer
before the requantize read them.  The speed they cost is the benchmark's to
show; these tests keep the cause from coming back, on any machine.
"""

from __future__ import annotations

import pytest

from tests.test_tvm_tuning import _pointwise_module, _run, _target


def _llvm_ir(knobs) -> str:

    from qbench.tvm.cpu_schedule import compile_module, cpu_pipeline

    mod, target = _pointwise_module(), _target()
    executable = compile_module(mod, target, cpu_pipeline(target, knobs=knobs))
    return "".join(m.inspect_source("ll") for m in executable.mod.imports if m.kind == "llvm")


@pytest.mark.parametrize("parallel", [True, False])
def test_the_pointwise_kernel_allocates_no_workspace(parallel):
    from qbench.tvm.cpu_schedule import Knobs

    llvm_ir = _llvm_ir(Knobs(parallel=parallel))
    assert ("TVMBackendParallelLaunch" in llvm_ir) == parallel
    assert "AllocWorkspace" not in llvm_ir


def test_without_the_epilogue_in_the_loop_the_layer_sized_accumulator_is_allocated():
    """The check above can fail: the 6x8x16 int32 accumulator (3 KiB) needs a workspace."""
    from qbench.tvm.cpu_schedule import Knobs

    assert "AllocWorkspace" in _llvm_ir(Knobs(parallel=True, epilogue_in_loop=False))


@pytest.mark.parametrize("kind", ["pointwise", "conv2d", "depthwise", "depthwise-blocks"])
def test_the_epilogue_in_the_loop_computes_what_the_layer_wide_one_does(kind):
    import numpy as np

    from qbench.backends.tvm import relax_module
    from qbench.tvm.cpu_schedule import Knobs
    from tests.test_tvm_int8_lowering import _one_op_case

    mod, target = relax_module(_one_op_case(kind, 0)[0])[0], _target()
    for parallel in (True, False):
        in_loop = _run(mod, target, knobs=Knobs(parallel=parallel, epilogue_in_loop=True))
        np.testing.assert_array_equal(in_loop, _run(mod, target, knobs=Knobs(parallel=parallel, epilogue_in_loop=False)))


@pytest.mark.parametrize("mcpu, avx512", [("core-avx2", False), ("znver3", False), ("znver4", True), ("skylake-avx512", True)])
def test_kernels_go_parallel_later_on_avx512_targets(mcpu, avx512):
    """AVX-512 kernels do a loop iteration's work in fewer instructions: below 2**18 iterations a
    launch on the thread pool cost them more than it saved (the 64x64 model), not AVX2's."""
    import tvm

    from qbench.tvm.cpu_schedule import MIN_PARALLEL_ITERATIONS, MIN_PARALLEL_ITERATIONS_AVX512, parallel_threshold

    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    assert parallel_threshold(target) == (MIN_PARALLEL_ITERATIONS_AVX512 if avx512 else MIN_PARALLEL_ITERATIONS)
    assert parallel_threshold(None) == MIN_PARALLEL_ITERATIONS
