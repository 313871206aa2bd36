"""qbench: accuracy/latency/size regression suite for quantized and compiled
MobileNetV2 variants (native TensorFlow, TFLite FP32, TFLite INT8, TVM AVX2 INT8).

Heavy frameworks (TensorFlow, LiteRT, TVM) are imported lazily so that the
pure-Python parts (datasets, quantization helpers, reports) stay cheap.
"""

from qbench.errors import QBenchError

__version__ = "0.1.0"

VARIANTS = ("native", "tflite-fp32", "tflite-int8", "tvm-avx2-int8")

__all__ = ["QBenchError", "VARIANTS", "__version__"]
