"""How qbench measures: each variant in a worker process of its own (:mod:`.isolation`,
:mod:`.worker`), per-call latency in interleaved rounds (:mod:`.latency`), deliberate regressions
for the gate's self-check (:mod:`.inject`), and the quantization studies (:mod:`.calibration_study`,
:mod:`.layer_error`)."""
