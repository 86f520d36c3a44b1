"""Turn float16 weights behind DEQUANTIZE into float32 constants (TFLM's DEQUANTIZE takes
only int8, int16 and uint8).

Pattern:   DEQUANTIZE(w) with w a float16 constant (the converter's float16 quantization:
           every weight and bias is stored in float16 and widened at Prepare).
Rewrite:   a float32 constant holding float32(w); readers read it instead.
Exact:     widening float16 to float32 is exact (every float16 is a float32), and LiteRT's
           DEQUANTIZE computes exactly that once, at Prepare; the reference interpreter's
           kernel does the same (tests/test_interpreter.py checks it against LiteRT).
Checked:   tests/passes/test_float16_weights.py: the fp16 fixture gives the original's outputs
           bit for bit in LiteRT and runs in TFLM.
Target:    only when the result must run on TFLM (`tflm`, `any`); `litert` keeps the
           half-size weights. The weights double in size: the summary prints the cost.
Invariant: every model output is bit-identical.
"""

from __future__ import annotations

from tflgraph.legalize import DecompressWeights
from tflgraph.pipeline import register


@register("float16-weights")
class Float16Weights(DecompressWeights):
    """Fold DEQUANTIZE of float16 constants into float32 constants (for TFLM)."""

    op_type = "DEQUANTIZE"
    what = "a float16 constant"

    def compressed(self, t) -> bool:
        return t.type_name == "FLOAT16"
