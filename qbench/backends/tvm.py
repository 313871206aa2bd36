"""``tvm-avx2-int8``: Apache TVM (Relax ``from_tflite``) compiling the int8 ``.tflite`` for AVX2.

``from_tflite`` emulates every int8 op in float32 (dequantize -> op ->
quantize); :mod:`qbench.tvm.int8_lowering` turns those patterns back into
integer arithmetic before compiling, so the int8 variant runs int8 x int8 ->
int32 kernels and requantizes the way TFLite's reference kernels do.  Both TVM
variants compile with Relax's CPU pipeline (legalize, then operator fusion)
plus :mod:`qbench.tvm.cpu_schedule`'s default schedule (inline, vectorize over
channels, parallel when big enough), not ``tvm.compile``'s fusion-free,
unscheduled default.  Kernels found in a tuning database
(:mod:`qbench.tvm.tuning`: the user's ``build/tvm-tuning/``, then the
committed one) take their tuned schedule instead.

The artifact is an exported ``.so`` (kernels plus weights); the input and
output quantization come from the int8 model, recorded in the sidecar JSON.
"""

from __future__ import annotations

import functools
import json
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbench.backends import register
from qbench.backends.base import Runner, Variant
from qbench.backends.kernels import fixed
from qbench.backends.quant import QParams
from qbench.backends.tflite import tflite_io_params
from qbench.core.errors import QBenchError, one_line
from qbench.core.fsutil import stable_hash
from qbench.tvm.tuning_database import database_digest, database_dirs

TVM_MCPU = "core-avx2"
TVM_PIPELINE = "integer-lowering+cpu-fused+inline-vectorize+vpmaddwd+requantize-kernel+int16-products"
# The modules that decide what TVM compiles: their source is in the variants' cache key, so an edit to
# any of them rebuilds cached .so files (a hand-bumped version string was one edit away from stale builds).
_COMPILER_MODULES = (
    "tvm/int8_lowering.py",
    "tvm/fixed_point.py",
    "tvm/avx2_int8_kernels.py",
    "tvm/vnni_int8_kernels.py",
    "tvm/amx_int8_kernels.py",
    "tvm/tuning_database.py",
    "tvm/cpu_schedule.py",
    "tvm/paired_products.py",
    "backends/tvm.py",
)


_QBENCH_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def compiler_digest(root: Path = _QBENCH_ROOT) -> str:
    """Digest of :data:`_COMPILER_MODULES`' source under ``root`` (the qbench package)."""
    return stable_hash(*((root / name).read_bytes() for name in _COMPILER_MODULES))


def tvm_target_spec(threads: int, mcpu: str = TVM_MCPU) -> dict:
    return {"kind": "llvm", "mcpu": mcpu, "num-cores": int(threads)}


def vnni_lanes(flags: frozenset) -> tuple[int, ...]:
    """The int32 lanes of ``vpdpbusd`` a CPU with ``flags`` offers: 16 (AVX-512 VNNI) and 8 (its 256-bit
    form with AVX-512VL, or AVX-VNNI); () for neither."""
    lanes = []
    if "avx512_vnni" in flags:
        lanes.append(16)
    if ("avx512_vnni" in flags and "avx512vl" in flags) or "avx_vnni" in flags:
        lanes.append(8)
    return tuple(lanes)


def host_isa_key() -> tuple:
    """What decides ``tvm-host-int8``'s code without importing TVM: the CPU's vendor, family and model
    (LLVM names the CPU from them) and its speed-relevant ISA flags, for the cache key."""
    from qbench.core.machine import parse_cpuinfo, read_cpuinfo

    info = parse_cpuinfo(read_cpuinfo())
    return tuple(sorted((k, str(v)) for k, v in info.items() if k != "cpu_mhz"))


def host_target(threads: int, flags: frozenset) -> tuple[dict, tuple[int, ...]]:
    """The LLVM target for this CPU (the CPU name LLVM detects) and the ``vpdpbusd`` lanes to use:
    those the CPU's flags offer and LLVM agrees the named CPU has."""
    from tvm.target import codegen

    mcpu = str(codegen.llvm_get_system_cpu())
    spec = tvm_target_spec(threads, mcpu)
    lanes = vnni_lanes(flags)
    if lanes:
        import tvm

        needed = "avx512vnni" if 16 in lanes else "avxvnni"
        if not codegen.llvm_cpu_has_features([needed], tvm.target.Target(spec)):
            lanes = ()
    from qbench.tvm import amx_int8_kernels as amx

    if 16 in lanes and amx.has_amx(flags) and amx.request_permission():  # LLVM's CPU names may not say AMX
        spec["mattr"] = list(amx.FEATURES)
    return spec, lanes


def target_for(threads: int, host: bool) -> tuple[dict, tuple[int, ...]]:
    """(target spec, ``vpdpbusd`` lanes) to compile for: this CPU's (``tvm-host-int8``) or ``core-avx2``'s."""
    if not host:
        return tvm_target_spec(threads), ()
    from qbench.backends.kernels import machine_flags

    return host_target(threads, machine_flags())


def host_kernel_isa(flags: frozenset) -> str:
    """The ISA column of ``tvm-host-int8`` on a CPU with these /proc/cpuinfo ``flags``."""
    from qbench.tvm.amx_int8_kernels import has_amx

    return describe_host(vnni_lanes(flags), has_amx(flags))


def describe_host(lanes, tiles: bool = False) -> str:
    """How ``tvm-host-int8`` is built for a CPU with these ``vpdpbusd`` lanes (and AMX ``tiles``), for
    the ISA column."""
    if 16 in lanes and tiles:
        return "AVX-512 VNNI (target this CPU: vpdpbusd, 512-bit); AMX int8 (tdpbusd) for 1x1 convolutions in large models"
    if 16 in lanes:
        return "AVX-512 VNNI (target this CPU: vpdpbusd, 512-bit)"
    if 8 in lanes:
        return "AVX-VNNI (target this CPU: vpdpbusd, 256-bit)"
    return "AVX2 (target this CPU: vpmaddwd; no VNNI on this CPU, the kernels of tvm-avx2-int8)"


def cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("flags") and " avx2" in line for line in fh)
    except OSError:
        return True  # not Linux: let LLVM decide


def import_tflite(tflite_bytes: bytes):
    """The Relax module ``from_tflite`` makes of a ``.tflite`` (float-simulated int8 ops)."""
    import tflite
    import tvm.relax.frontend.tflite as tvm_tflite

    from qbench.backends.tflite_model import parse_model

    parse_model(tflite_bytes, "TFLite model")
    try:
        return tvm_tflite.from_tflite(tflite.Model.GetRootAsModel(tflite_bytes, 0))
    except Exception as exc:
        raise QBenchError(f"TVM's TFLite frontend rejected the model: {type(exc).__name__}: {one_line(exc, 300)}") from None


def has_byte_permutes(spec: dict) -> bool:
    """Whether the target ``spec`` names a CPU with AVX-512 VBMI (``vpermi2b``: the lookup tables)."""
    import tvm
    from tvm.target import codegen

    return bool(codegen.llvm_cpu_has_features(["avx512vbmi"], tvm.target.Target(spec)))


def has_amx_tiles(spec: dict) -> bool:
    """Whether the target ``spec`` enables AMX int8 tiles (:func:`host_target` adds them where the CPU
    has them and Linux grants them)."""
    from qbench.tvm.amx_int8_kernels import FEATURES

    return set(FEATURES) <= set(spec.get("mattr", ()))


def relax_module(tflite_bytes: bytes, vnni: tuple[int, ...] = (), byte_permutes: bool = False, amx: bool = False):
    """The module qbench compiles: ``from_tflite``'s, with int8 patterns lowered to integer ops
    (``vnni``: the ``vpdpbusd`` lanes the target offers; ``byte_permutes``: it has ``vpermi2b``;
    ``amx``: AMX tiles). Returns (module, how many of each pattern were lowered)."""
    from qbench.tvm.int8_lowering import lower_int8

    return lower_int8(import_tflite(tflite_bytes), vnni, byte_permutes, amx)


def compile_tvm(
    tflite_bytes: bytes, out_so: Path, threads: int, tuning: list[Path] = (), spec: dict | None = None, vnni: tuple[int, ...] = ()
) -> dict:
    """Relax TFLite frontend -> integer lowering -> fused CPU pipeline for ``spec`` (default AVX2), each
    kernel scheduled from the ``tuning`` databases (:mod:`qbench.tvm.tuning`) or by the default rule ->
    export_library(.so). Returns metadata."""
    import tvm

    from qbench.tvm.cpu_schedule import compile_module, cpu_pipeline
    from qbench.tvm.tuning_database import open_database

    spec = spec or tvm_target_spec(threads)
    mod, lowered = relax_module(tflite_bytes, vnni, has_byte_permutes(spec), has_amx_tiles(spec))
    target = tvm.target.Target(spec)
    applied = {"tuned": 0}
    pipeline = cpu_pipeline(target, database=open_database(list(tuning), spec["mcpu"]), applied=applied)
    executable = compile_module(mod, target, pipeline)
    # without the DWARF TVM's LLVM codegen emits (41 % of the 64x64 int8 .so): nothing loads it at run
    # time; the symbol table stays, so profilers still name the kernels
    executable.export_library(str(out_so), options=["-Wl,--strip-debug"])
    return {
        "target": spec,
        "vnni_lanes": list(vnni),
        "tvm_target": str(target),
        "tvm_version": tvm.__version__,
        "pipeline": TVM_PIPELINE,
        "compiler_digest": compiler_digest(),
        "integer_lowered": lowered,
        "tuning": {"databases": [str(d) for d in tuning], "tuned_kernels": applied["tuned"]},
    }


class TVMRunner(Runner):
    """Relax VM running the exported .so; quantization params (if any) from the sidecar JSON."""

    def __init__(self, so_path: Path, meta: dict | None = None, threads: int | None = None, variant: str = "tvm-avx2-int8"):
        self.variant = variant
        if threads:
            os.environ["TVM_NUM_THREADS"] = str(int(threads))  # read when TVM's thread pool starts
        import tvm
        from tvm import relax

        so_path = Path(so_path)
        if meta is None:
            meta_path = so_path.with_suffix(so_path.suffix + ".json")
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise QBenchError(f"{variant}: metadata {meta_path} missing or unreadable ({exc})") from None
        if has_amx_tiles(meta.get("target", {})):
            from qbench.tvm.amx_int8_kernels import request_permission

            if not request_permission():
                raise QBenchError(f"{variant}: {so_path.name} uses AMX tiles and Linux did not grant them (arch_prctl)")
        try:
            lib = tvm.runtime.load_module(str(so_path))
            self.vm = relax.VirtualMachine(lib, tvm.cpu())
            self._fn = self.vm["main"]
        except Exception as exc:
            raise QBenchError(f"{variant}: cannot load {so_path}: {one_line(exc)}") from None
        self._tvm = tvm
        self._dev = tvm.cpu()
        self._input = self._input_view = None  # made on first use: the input tensor and its numpy view
        inp, out = meta["input"], meta["output"]
        self.input_shape = tuple(inp["shape"])
        self._in_dtype = np.dtype(inp["dtype"])
        self.input_qparams = QParams(**inp["quant"]) if inp.get("quant") else None
        self.output_qparams = QParams(**out["quant"]) if out.get("quant") else None

    def prepare(self, x):
        """Quantize into the runner's one input tensor, through a numpy view of it: making a new TVM
        tensor per call took 16 us, a third of the 64x64 model's harness time."""
        q = self.quantize_input(self._check(x))
        if self._input is None:
            self._input = self._tvm.runtime.tensor(np.zeros(self.input_shape, self._in_dtype), self._dev)
            self._input_view = np.from_dlpack(self._input)
        np.copyto(self._input_view, q, casting="unsafe")  # as astype(self._in_dtype) would
        return self._input

    def invoke(self, prepared):
        out = self._fn(prepared)
        if not hasattr(out, "numpy"):
            out = out[0]
        # a copy (the VM may reuse the output's memory) through DLPack: 0.5 us where .numpy() took 6 us
        return np.from_dlpack(out).copy()

    def pool_threads(self) -> int:
        """The size of TVM's runtime thread pool (set from ``TVM_NUM_THREADS``, capped at the usable cores)."""
        return int(self._tvm.get_global_func("runtime.NumThreads")())

    def invoke_raw(self, raw_input: np.ndarray) -> np.ndarray:
        """Run an input already in the model's dtype (quantized for int8 agreement tests)."""
        return self.invoke(self._tvm.runtime.tensor(np.ascontiguousarray(raw_input, dtype=self._in_dtype), self._dev))


def _build_from(source: str, host: bool = False):
    """Compile ``source``'s ``.tflite`` artifact with TVM, for AVX2 or (``host``) for this CPU."""

    def build(ctx, out: Path) -> dict:
        model = ctx.artifact(source)
        meta = tflite_io_params(model.path)
        tuning = database_dirs(ctx.settings.build_dir)
        spec, vnni = target_for(ctx.settings.threads, host)
        ctx.progress(
            f"compiling {model.path.name} with TVM for {spec['mcpu']}"
            + (f" (vpdpbusd, {'/'.join(map(str, vnni))} int32 lanes)" if vnni else "")
            + (f" (tuned kernels from {', '.join(map(str, tuning))})" if tuning else "")
        )
        meta.update(compile_tvm(model.path.read_bytes(), out, ctx.settings.threads, tuning, spec, vnni))
        if tuning:
            tuned = meta["tuning"]["tuned_kernels"]
            ctx.progress(f"TVM: {tuned} kernels of {model.path.name} took their schedule from a tuning database")
        meta["source"] = model.path.name
        return meta

    return build


def _tvm_variant(name: str, source: str, description: str, host: bool = False, **kw) -> Variant:
    kw.setdefault("kernel_isa", fixed("AVX2 (target core-avx2: vpmaddwd, 256-bit)"))
    return Variant(
        name=name,
        description=description,
        suffix=".so",
        build=_build_from(source, host),
        load=lambda path, meta, threads, **_: TVMRunner(path, meta, threads, name),
        derives_from=source,
        cache_key=lambda ctx: (
            version("apache-tvm"),
            tvm_target_spec(ctx.settings.threads) if not host else ("host", host_isa_key(), ctx.settings.threads),
            TVM_PIPELINE,
            compiler_digest(),
            database_digest(database_dirs(ctx.settings.build_dir)),
        ),
        unavailable=lambda: None if cpu_has_avx2() else "this CPU has no AVX2",
        target_specific=True,  # compiled by LLVM for this CPU: a fleet compiles it on each machine
        runtime_modules=("tvm", "tvm.relax"),
        **kw,
    )


register(
    _tvm_variant(
        "tvm-avx2-int8",
        "tflite-int8",
        'Apache TVM (Relax `from_tflite`) compiling the int8 `.tflite` for `{"kind": "llvm", "mcpu": "core-avx2"}`, '
        "exported as a `.so`",
    )
)
register(
    _tvm_variant(
        "tvm-host-int8",
        "tflite-int8",
        "Apache TVM compiling the int8 `.tflite` for this CPU (the LLVM CPU name TVM detects), with "
        "`vpdpbusd` kernels where the CPU has AVX-512 VNNI or AVX-VNNI (and AMX tiles for a large model's 1x1 "
        "convolutions where it has AMX), AVX2's `vpmaddwd` where it has neither",
        host=True,
        kernel_isa=host_kernel_isa,
        default=False,
    )
)
# Selected by name: the float model through the same TVM pipeline, so what integer arithmetic buys
# can be told from what TVM's compilation buys (issue 8 will make it a default once TVM is tuned).
register(
    _tvm_variant(
        "tvm-avx2-fp32",
        "tflite-fp32",
        "Apache TVM compiling the fp32 `.tflite` the same way (selected by name)",
        lossless_tolerance=1e-3,
        default=False,
    )
)
