"""The TVM compiler for the int8 variants: integer lowering of from_tflite's graph
(:mod:`.int8_lowering`), the CPU schedule (:mod:`.cpu_schedule`) and its AVX2 kernels
(:mod:`.avx2_int8_kernels`), tuning (:mod:`.tuning`, :mod:`.tuning_database`, :mod:`.tune`).

Named ``qbench.tvm``; inside it, ``import tvm`` is Apache TVM (absolute imports)."""
