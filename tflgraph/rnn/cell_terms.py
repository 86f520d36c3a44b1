"""Read the constant weights of a recurrent cell out of a loop body (see tflgraph.rnn.loops).

A converted Keras RNN step (LSTM, SimpleRNN) computes its pre-activation as

    z = FC(x_t, W) + FC(h, U) + b      # ADDs in any order; the FCs may carry the bias

`affine_terms` walks that sum back from its ADD tree and returns W, U and the constant bias
terms; the caller checks the shapes its cell needs (tflgraph.rnn.lstm_cell: four gate blocks, the
fuse-simple-rnn pass: one) and proves the cell numerically. The predicates it is made of
(plain float32 constant, FULLY_CONNECTED without extras) serve the
other loop passes too.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor


def is_float_const(t: Tensor | None) -> bool:
    """True if `t` is a plain (not quantized) float32 constant with data."""
    q = (t.quantization or {}) if t is not None else {}
    scale = q.get("scale")
    return (
        t is not None
        and t.is_constant
        and t.type_name == "FLOAT32"
        and t.data is not None
        and (scale is None or not len(scale))
    )


def squeezes(p: Operator) -> bool:
    """True if RESHAPE `p` only drops size-1 axes ([1, 4u] -> [4u])."""
    src, out = p.inputs[0].shape, p.outputs[0].shape
    return [d for d in src if d != 1] == [d for d in out if d != 1]


def plain_fc(p: Operator) -> bool:
    """True if FULLY_CONNECTED `p` is x @ W^T (+ b) on a 2-D x: float32 constant W and b, no
    fused activation, no keep_num_dims, default weights format."""
    w = p.inputs[1]
    bias = p.inputs[2] if len(p.inputs) > 2 else None
    return (
        p.activation == "NONE"
        and not p.option("keep_num_dims")
        and p.option("weights_format", 0) == 0
        and is_float_const(w)
        and (bias is None or is_float_const(bias))
        and len(p.inputs[0].shape) == 2
    )


def affine_terms(
    body: Subgraph,
    roots: list[Tensor],
    x_t: Tensor,
    h: Tensor,
    *,
    const_sizes: tuple[int, ...] | None = None,
    squeeze: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | str:
    """sum(roots) as FC(x_t, W) + FC(h, U) + constants: (W, U, [bias arrays]) or the reason
    why not. The sum is a tree of ADDs without fused activation over plain FULLY_CONNECTEDs
    (`plain_fc`), one reading x_t and one reading h, and float32 constants (whose size must
    be in `const_sizes` when given; an FC's own bias is taken as it is). With `squeeze`, a
    RESHAPE that only drops size-1 axes may stand between the terms."""
    found: dict[str, np.ndarray] = {}
    bias: list[np.ndarray] = []
    stack = list(roots)
    while stack:
        t = stack.pop()
        p = body.producer(t)
        kind = p.type if p is not None else "constant" if t.is_constant else "input"
        if is_float_const(t) and (const_sizes is None or t.data.size in const_sizes):
            bias.append(t.data)
        elif kind == "ADD" and p.activation == "NONE":
            stack.extend(p.inputs)
        elif squeeze and kind == "RESHAPE" and squeezes(p):
            stack.append(p.inputs[0])
        elif kind == "FULLY_CONNECTED" and not is_float_const(p.inputs[1]):
            return "the gate weights are not float32 constants (quantized?)"
        elif kind == "FULLY_CONNECTED" and plain_fc(p):
            key = "W" if p.inputs[0] is x_t else "U" if p.inputs[0] is h else None
            if key is None or key in found:
                return "a gate FULLY_CONNECTED reads neither x_t nor h, or one of them twice"
            found[key] = p.inputs[1].data
            if len(p.inputs) > 2 and p.inputs[2] is not None:
                bias.append(p.inputs[2].data)
        else:
            return f"the gate pre-activation has a term from {kind}, not FC(x, W) + FC(h, U) + b"
    if set(found) != {"W", "U"}:
        return "the gate pre-activation lacks FC(x, W) or FC(h, U)"
    return found["W"], found["U"], bias
