"""How each op maps channels between its inputs and outputs (for tflgraph/channels/graph.py).

`visit(g, sg, op)` ties the op's slots in the ChannelGraph `g` and returns the function that
computes the op's output values (per-channel constants, NaN = unknown) from its input values,
or None when the op is not channel-wise in this form, which makes it block its tensors.
HANDLERS is the table: one row per op type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tflgraph.channels.graph import ChannelGraph, ValueFn
from tflgraph.channels.layers import LAYER_TYPES, Layer, activation, real
from tflgraph.channels.loops import visit_while
from tflgraph.io.schema import Options
from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.reference.kernels import ACTIVATIONS, sigmoid

UNARY = {  # channel-wise activations and what they do to a known constant
    **{name: ACTIVATIONS[name] for name in ("RELU", "RELU_N1_TO_1", "RELU6", "TANH")},
    "LOGISTIC": sigmoid,
}
QUANTIZED_EXACT = ("RELU", "RELU6", "RELU_N1_TO_1")  # keep an int8 zero exactly zero
BINARY = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "MAXIMUM": np.maximum}


def visit(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    if op.options is not None and not isinstance(op.options, Options):
        return None  # options the schema does not know: nothing to rely on
    if op.type in LAYER_TYPES:
        layer = Layer.of(sg, op)
        return None if layer is None else _layer(g, layer)
    handler = HANDLERS.get(op.type)
    return None if handler is None else handler(g, sg, op)


def _single(g: ChannelGraph, op: Operator) -> tuple[Tensor, Tensor] | None:
    """(data input, output) of a one-output op whose channel axis passes through unchanged."""
    if len(op.outputs) != 1 or op.outputs[0] is None or not op.inputs or op.inputs[0] is None:
        return None
    x, y = op.inputs[0], op.outputs[0]
    if g.slots(x) is None or g.slots(y) is None or x.shape[-1] != y.shape[-1]:
        return None
    return x, y


def _identity(f: Callable, kind: str | None = None, check=None):
    """A handler for ops that map channel c to channel c, computing values with f(op, v)."""

    def handler(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
        xy = _single(g, op)
        if xy is None or (check is not None and not check(op, xy[0])):
            return None
        x, y = xy
        g.union(g.slots(x), g.slots(y), x.shape[-1])
        if kind is not None:
            g.edits.append((sg, op, kind))
        return lambda: g.set_value(y, f(op, g.value(x)))

    return handler


def _unary(op: Operator, v: np.ndarray) -> np.ndarray:
    if op.inputs[0].is_quantized and op.type not in QUANTIZED_EXACT:
        return np.full_like(v, np.nan)  # quantized curves: no exactness claimed
    return UNARY[op.type](v)


def _keeps_channels(op: Operator, x: Tensor) -> bool:
    """MEAN/PAD/STRIDED_SLICE leave the channel axis whole and in place."""
    rank = len(x.shape)
    consts = [t.data if t is not None else None for t in op.inputs[1:]]
    if any(a is None for a in consts):
        return False
    if op.type == "MEAN":
        return rank - 1 not in {int(a) % rank for a in consts[0].reshape(-1)}
    if op.type == "PAD":
        return len(op.inputs) == 2 and not consts[0].reshape(rank, 2)[-1].any()
    begin, end, strides = (np.asarray(a).reshape(-1) for a in consts)
    bit = 1 << (rank - 1)
    if op.option("ellipsis_mask", 0) or op.option("new_axis_mask", 0) or op.option("offset", 0):
        return False
    if op.option("shrink_axis_mask", 0) & bit or strides[-1] != 1 or len(begin) != rank:
        return False
    begin_ok = op.option("begin_mask", 0) & bit or begin[-1] == 0
    end_ok = op.option("end_mask", 0) & bit or end[-1] >= x.shape[-1]
    return bool(begin_ok and end_ok)


def _layer(g: ChannelGraph, layer: Layer) -> ValueFn | None:
    x, y = layer.x, layer.y
    if g.slots(x) is None or g.slots(y) is None:
        return None
    states = layer.states()
    if any(g.slots(s) is None for s in states):
        return None
    for s in states:  # a unit goes from the states (and so from their writers) with y's
        g.union(g.slots(y), g.slots(s), y.shape[-1])
    g.layers.append(layer)
    if layer.kind == "DEPTHWISE_CONV_2D":
        g.union(g.slots(x), g.slots(y), x.shape[-1])
        if layer.hybrid:  # its input range spans every channel: only zero channels may go
            g.boundaries.append((layer, x, layer.reads()))
    else:
        g.boundaries.append((layer, x, layer.reads()))
    if layer.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        h0, c0 = states
        g.boundaries.append((layer, y, layer.recurrent_reads()))
        g.boundaries.append((layer, h0, layer.recurrent_reads()))  # step 1 reads h0

        def lstm_values():
            for s in states:
                if layer.sg.producer(s) is None:  # zeroed at allocation, written by op alone
                    g.values[s] = layer.out_value(g.value(x), np.zeros(y.shape[-1]))
            g.set_value(y, layer.out_value(g.value(x), g.value(c0)))

        return lstm_values
    return lambda: g.set_value(y, layer.out_value(g.value(x)))


def _binary(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    xs, y = op.inputs, op.outputs[0] if len(op.outputs) == 1 else None
    if len(xs) != 2 or any(t is None for t in xs) or y is None or g.slots(y) is None:
        return None
    c = y.shape[-1]
    for t in xs:
        if t.is_constant:  # a scalar, or a constant along the channel axis: sliced along
            if real(t) is None or (t.data.size != 1 and (not t.shape or t.shape[-1] != c)):
                return None
        elif g.slots(t) is None or t.shape[-1] != c:
            return None
    for t in xs:
        if not t.is_constant:
            g.union(g.slots(t), g.slots(y), c)
    if any(t.is_constant and t.shape and t.shape[-1] > 1 for t in xs):
        g.edits.append((sg, op, "binary"))
    a, b, act = xs[0], xs[1], op.activation
    return lambda: g.set_value(
        y, activation(act, BINARY[op.type](g.value(a), g.value(b)) * np.ones(c))
    )


def _concat(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    xs, y = op.inputs, op.outputs[0] if len(op.outputs) == 1 else None
    if y is None or g.slots(y) is None or any(t is None for t in xs):
        return None
    rank = len(y.shape)
    if op.option("axis", 0) % rank != rank - 1 or op.activation != "NONE":
        return None
    if any(len(t.shape) != rank for t in xs) or sum(t.shape[-1] for t in xs) != y.shape[-1]:
        return None
    if any(not t.is_constant and g.slots(t) is None for t in xs):
        return None
    offset = 0
    for t in xs:
        if t.is_constant:  # a constant part: its channels stay
            g.block([t], "a constant part of a CONCATENATION")
        base = g.const_slots(t) if t.is_constant else g.slots(t)
        g.union(base, g.slots(y) + offset, t.shape[-1])
        offset += t.shape[-1]
    return lambda: g.set_value(y, np.concatenate([g.value(t) for t in xs]))


def _split(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    """SPLIT(axis, x) on the channel axis: part j holds x's channels [j*P, (j+1)*P); position
    m of every part is tied too, so that the parts keep equal sizes."""
    if len(op.inputs) != 2 or any(t is None for t in op.inputs + op.outputs):
        return None
    axis, x, ys = op.inputs[0], op.inputs[1], op.outputs
    if axis.data is None or g.slots(x) is None:
        return None
    rank, c = len(x.shape), x.shape[-1]
    if int(axis.data.reshape(-1)[0]) % rank != rank - 1 or c % len(ys):
        return None
    part = c // len(ys)
    if any(g.slots(t) is None or t.shape[-1] != part for t in ys):
        return None
    for j, t in enumerate(ys):
        g.union(g.slots(x) + j * part, g.slots(t), part)
        g.union(g.slots(ys[0]), g.slots(t), part)

    def fn():
        for j, t in enumerate(ys):
            g.set_value(t, g.value(x)[j * part : (j + 1) * part])

    return fn


def _reshape(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    """A RESHAPE whose output's last dimension is M*C maps input channel c to output
    positions c, c+C, ..., c+(M-1)C (NHWC flattening keeps channels fastest-varying)."""
    shape = op.inputs[1] if len(op.inputs) > 1 else None
    if shape is not None and not shape.is_constant:
        return None  # a computed target shape would not follow the new channel count
    if len(op.outputs) != 1 or op.inputs[0] is None or op.outputs[0] is None:
        return None
    x, y = op.inputs[0], op.outputs[0]
    if g.slots(x) is None or g.slots(y) is None:
        return None
    c, n = x.shape[-1], y.shape[-1]
    if c == 0 or n % c or int(np.prod(x.shape)) != int(np.prod(y.shape)):
        return None
    for m in range(n // c):
        g.union(g.slots(x), g.slots(y) + m * c, c)
    g.edits.append((sg, op, "reshape"))
    return lambda: g.set_value(y, np.tile(g.value(x), n // c))


def _fill(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    """FILL(dims, value): every channel holds the scalar `value`; the constant dims follow
    the channel count (an LSTM's zero state is one)."""
    if len(op.inputs) != 2 or len(op.outputs) != 1 or any(t is None for t in op.inputs):
        return None
    dims, value, y = op.inputs[0], op.inputs[1], op.outputs[0]
    k = real(value)
    if dims.data is None or k is None or k.size != 1 or y is None or g.slots(y) is None:
        return None
    g.edits.append((sg, op, "fill"))
    return lambda: g.set_value(y, np.full(y.shape[-1], float(k.reshape(-1)[0])))


HANDLERS = {
    **{name: _identity(_unary) for name in UNARY},
    **{name: _binary for name in BINARY},
    # a constant field pools to itself (TFLite pools only over in-bounds positions)
    "MAX_POOL_2D": _identity(lambda op, v: activation(op.activation, v)),
    "AVERAGE_POOL_2D": _identity(lambda op, v: activation(op.activation, v)),
    "MEAN": _identity(lambda op, v: v, check=_keeps_channels),
    "PAD": _identity(lambda op, v: np.where(v == 0, 0.0, np.nan), check=_keeps_channels),
    "STRIDED_SLICE": _identity(lambda op, v: v, "strided_slice", check=_keeps_channels),
    "CONCATENATION": _concat,
    "SPLIT": _split,
    "RESHAPE": _reshape,
    "WHILE": visit_while,
    "FILL": _fill,
}
