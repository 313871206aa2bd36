"""Which instruction set a runtime's kernels use on this CPU: the ISA column of the summary.

Two rows of the table are on equal terms only when their kernels can use the
same instructions: on an AVX-512 VNNI CPU, LiteRT's XNNPACK runs int8
convolutions with ``vpdpbusd`` (64 int8 multiply-adds an instruction) while
a TVM build for ``core-avx2`` is held to ``vpmaddwd`` (16).  Each backend
names its kernels' widest instruction set with one of these rules, from the
CPU's flags (:func:`qbench.core.machine.parse_cpuinfo`) and what the runtime
dispatches to:

* XNNPACK (LiteRT's default delegate) picks its int8 GEMM microkernels at
  run time: AMX, then AVX-512 VNNI, AVX-VNNI, AVX-512 (SKX), AVX2, AVX,
  SSE4.1 (``src/configs/gemm-config.c``, ``init_qs8_qc8w_gemm_config``);
  its float ones: AVX-512F, FMA3/AVX2, AVX, SSE;
* oneDNN (OpenVINO's CPU plugin, TensorFlow's oneDNN ops) and MLAS (ONNX
  Runtime) dispatch the same way by CPU;
* TensorFlow's own kernels (Eigen) and LiteRT's reference kernels use what
  they were compiled for (the pip TensorFlow: AVX, as its start-up note says);
* TVM uses what its target names (``core-avx2``: AVX2), whatever the CPU.

These are the rules as documented and read in the runtimes' sources, not a
trace of the instructions executed (one was traced: on an AMX VM, ``perf``
showed LiteRT int8's convolutions in XNNPACK's ``..._16x64c4__avx512amx``
GEMMs, as the AMX rule says; docs/tvm.md, fourth pass).
"""

from __future__ import annotations

from collections.abc import Callable

Rule = Callable[[frozenset], str]


def int8_dispatch(flags: frozenset) -> str:
    """The int8 dot-product class XNNPACK, oneDNN and MLAS pick on a CPU with ``flags``."""
    if {"amx_int8", "amx_tile"} <= flags:
        return "AMX int8"
    if "avx512_vnni" in flags:
        return "AVX-512 VNNI (vpdpbusd, 512-bit)"
    if "avx_vnni" in flags:
        return "AVX-VNNI (vpdpbusd, 256-bit)"
    if "avx512bw" in flags:
        return "AVX-512BW (vpmaddwd, 512-bit)"
    if "avx2" in flags:
        return "AVX2 (vpmaddwd, 256-bit)"
    return "SSE4.1/AVX (128-bit)"


def float_dispatch(flags: frozenset) -> str:
    """The float32 GEMM class XNNPACK, oneDNN and MLAS pick on a CPU with ``flags``."""
    if "avx512f" in flags:
        return "AVX-512F (FMA, 512-bit)"
    if {"fma", "avx2"} <= flags:
        return "FMA3/AVX2 (256-bit)"
    if "avx" in flags:
        return "AVX (256-bit)"
    return "SSE (128-bit)"


def fixed(label: str) -> Rule:
    """A rule for kernels compiled for one instruction set, whatever the CPU has."""
    return lambda _flags: label


def int8_with_float(flags: frozenset) -> str:
    """A mostly-int8 model with some operators in float (the selective variant)."""
    return f"{int8_dispatch(flags)}; float ops {float_dispatch(flags)}"


def machine_flags() -> frozenset:
    from qbench.core.machine import parse_cpuinfo, read_cpuinfo

    return frozenset(parse_cpuinfo(read_cpuinfo())["isa"])
