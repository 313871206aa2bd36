"""qbench: accuracy/latency/size regression suite for quantized and compiled
MobileNetV2 variants; the variants are registered in :mod:`qbench.backends`.

Heavy frameworks (TensorFlow, LiteRT, TVM) are imported lazily so that the
pure-Python parts (datasets, quantization helpers, reports) stay cheap.
"""

from qbench.core.errors import QBenchError

__version__ = "0.1.0"

__all__ = ["QBenchError", "__version__"]
