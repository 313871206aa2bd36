"""``tvm-host-int8`` (qbench.backends.tvm): compiled for the CPU it runs on, keyed by it, tuned only for it.

The kernels themselves are checked bit-exact against LiteRT's reference
kernels in ``tests/test_tvm_int8_lowering.py`` (the ``-vnni`` one-op cases)
and the whole model against LiteRT in ``benchmarks/test_agreement.py``.
"""

from __future__ import annotations

import pytest

from qbench import backends
from qbench.backends import tvm as tvm_backend
from qbench.core import machine

ZEN3 = (
    "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
    "model name\t: AMD EPYC 7B13\nflags\t\t: sse4_2 avx avx2 fma f16c\n\n"
)
ZEN4 = ZEN3.replace("model\t\t: 1", "model\t\t: 17").replace("fma f16c", "fma f16c avx512f avx512bw avx512vl avx512_vnni")


def test_host_target_is_the_cpu_llvm_detects_with_the_vnni_its_flags_offer():
    from tvm.target import codegen

    from qbench.backends.kernels import machine_flags
    from qbench.tvm import amx_int8_kernels

    flags = machine_flags()
    spec, lanes = tvm_backend.host_target(2, flags)
    tiles = 16 in lanes and amx_int8_kernels.has_amx(flags) and amx_int8_kernels.request_permission()
    want = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": 2}
    assert spec == ({**want, "mattr": list(amx_int8_kernels.FEATURES)} if tiles else want)
    assert tvm_backend.has_amx_tiles(spec) == tiles
    assert set(lanes) <= set(tvm_backend.vnni_lanes(flags))
    assert tvm_backend.host_target(2, frozenset({"avx", "avx2", "fma"}))[1] == ()  # no VNNI flag: AVX2 kernels


def test_the_isa_column_names_amx_tiles_only_on_a_cpu_with_them():
    zen4 = frozenset(machine.parse_cpuinfo(ZEN4)["isa"])
    assert "AMX" not in tvm_backend.host_kernel_isa(zen4) and "512-bit" in tvm_backend.host_kernel_isa(zen4)
    assert "AMX int8 (tdpbusd)" in tvm_backend.host_kernel_isa(zen4 | {"amx_tile", "amx_int8"})
    assert "AMX" not in tvm_backend.host_kernel_isa(frozenset({"avx2", "amx_tile", "amx_int8"}))  # tiles only beside VNNI


def test_the_host_build_is_keyed_by_the_cpu_and_the_avx2_build_is_not(monkeypatch):
    keys = {}
    for name, text in (("zen3", ZEN3), ("zen4", ZEN4)):
        monkeypatch.setattr(machine, "read_cpuinfo", lambda path="/proc/cpuinfo", text=text: text)
        keys[name] = tvm_backend.host_isa_key()
    assert keys["zen3"] != keys["zen4"]
    assert tvm_backend.vnni_lanes(frozenset(machine.parse_cpuinfo(ZEN4)["isa"])) == (16, 8)
    assert tvm_backend.vnni_lanes(frozenset(machine.parse_cpuinfo(ZEN3)["isa"])) == ()
    host, avx2 = backends.get("tvm-host-int8"), backends.get("tvm-avx2-int8")
    assert host.target_specific and avx2.target_specific and host.derives_from == avx2.derives_from == "tflite-int8"


def test_tuning_records_apply_only_to_the_cpu_they_were_tuned_for():
    pytest.importorskip("tvm")
    from qbench.tvm.tuning_database import COMMITTED_DATABASE, open_database

    records = open_database([COMMITTED_DATABASE]).get_all_tuning_records()
    cpus = {str(r.target.attrs["mcpu"]) for r in records}
    assert "core-avx2" in cpus, cpus  # tvm-avx2-int8's, for the Kenning-sized model
    for cpu in cpus:
        mine = open_database([COMMITTED_DATABASE], cpu).get_all_tuning_records()
        assert mine and {str(r.target.attrs["mcpu"]) for r in mine} == {cpu}
    assert sum(len(open_database([COMMITTED_DATABASE], cpu).get_all_tuning_records()) for cpu in cpus) == len(records)
    assert open_database([COMMITTED_DATABASE], "no-such-cpu") is None
