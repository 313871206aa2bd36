"""The ISA column (qbench.backends.kernels): what each runtime's kernels use, from the CPU's flags."""

from __future__ import annotations

import pytest

from qbench import backends
from qbench.backends import kernels

VNNI = frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni"})
AVX2_ONLY = frozenset({"avx", "avx2", "fma"})  # the Zen 3 VMs
AVX_VNNI_ONLY = frozenset({"avx", "avx2", "fma", "avx_vnni"})  # a client CPU without AVX-512


@pytest.mark.parametrize(
    ("flags", "int8", "float32"),
    [
        (VNNI, "AVX-512 VNNI (vpdpbusd, 512-bit)", "AVX-512F (FMA, 512-bit)"),
        (AVX2_ONLY, "AVX2 (vpmaddwd, 256-bit)", "FMA3/AVX2 (256-bit)"),
        (AVX_VNNI_ONLY, "AVX-VNNI (vpdpbusd, 256-bit)", "FMA3/AVX2 (256-bit)"),
        (frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw"}), "AVX-512BW (vpmaddwd, 512-bit)", "AVX-512F (FMA, 512-bit)"),
    ],
)
def test_dispatch_follows_the_cpus_flags(flags, int8, float32):
    assert kernels.int8_dispatch(flags) == int8 and kernels.float_dispatch(flags) == float32


def test_litert_int8_and_tvm_avx2_are_on_equal_terms_only_without_vnni():
    litert, tvm = backends.get("tflite-int8").kernel_isa, backends.get("tvm-avx2-int8").kernel_isa
    assert litert(VNNI).startswith("AVX-512 VNNI") and tvm(VNNI).startswith("AVX2")
    assert litert(AVX2_ONLY).startswith("AVX2") and tvm(AVX2_ONLY).startswith("AVX2")


def test_tvm_host_is_on_litert_int8s_terms_on_every_kind_of_cpu():
    from qbench.backends.tvm import vnni_lanes

    litert, host = backends.get("tflite-int8").kernel_isa, backends.get("tvm-host-int8").kernel_isa
    for flags, lanes in ((VNNI, (16, 8)), (AVX_VNNI_ONLY, (8,)), (AVX2_ONLY, ())):
        assert vnni_lanes(flags) == lanes
        assert host(flags).split(" (")[0] == litert(flags).split(" (")[0], (host(flags), litert(flags))


def test_every_default_variant_names_its_kernels_in_the_table():
    from qbench.measure.results import VariantResult
    from qbench.report.tables import render_markdown, summarize

    rows = summarize({name: VariantResult(name) for name in backends.names(default_only=True)})
    assert all(r["kernel_isa"] for r in rows), [r["variant"] for r in rows if not r["kernel_isa"]]
    assert "Kernels (ISA here)" in render_markdown(rows)
