"""Hybrid layers: int8 weights with float activations (the converter's dynamic-range
quantization). LiteRT runs them with hybrid kernels that quantize the float input on the fly;
TFLM has none ("Input type: FLOAT32 with filter type: INT8 not supported").

What the layer approximates is the float layer with the dequantized weights, (w - zero_point)
* scale: passes/dequantize_hybrid.py writes that layer for TFLM, and the reference interpreter
computes it when asked to (`evaluate_tensors(..., hybrid_as_float=True)`), for checks whose
result does not depend on the layer's arithmetic (a rewrite that leaves every hybrid layer as
it is).
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Tensor
from tflgraph.reference.kernels import dequantize_array

HYBRID_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "UNIDIRECTIONAL_SEQUENCE_LSTM")


def is_int8_weight(t: Tensor | None) -> bool:
    """A dense int8 constant with a quantization scale: a hybrid layer's weight."""
    scale = (t.quantization or {}).get("scale", []) if t is not None else []
    return (
        t is not None
        and t.type_name == "INT8"
        and t.is_constant
        and t.sparsity is None
        and np.size(scale) > 0
    )


def is_hybrid(op: Operator) -> bool:
    """A float32-input HYBRID_OPS op with an int8 weight operand."""
    x = op.inputs[0] if op.type in HYBRID_OPS and op.inputs else None
    return (
        x is not None and x.type_name == "FLOAT32" and any(is_int8_weight(w) for w in op.inputs[1:])
    )


def dequantized(w: Tensor) -> np.ndarray:
    """(w - zero_point) * scale, per channel along quantized_dimension, as float32: what a
    DEQUANTIZE of `w` computes."""
    return dequantize_array(w.data, w.quantization)
