"""The layers whose weights strip-dead-channels reads and slices.

A `Layer` wraps one FULLY_CONNECTED ([out, in]), CONV_2D ([out, h, w, in]),
DEPTHWISE_CONV_2D ([1, h, w, C], multiplier 1) or float UNIDIRECTIONAL_SEQUENCE_LSTM (gate
matrices W_g [u, F], recurrent U_g [u, u], biases b_g [u], variable states [B, u]). It answers
the questions of the channel analysis (tflgraph/channels/graph.py):

- `reads()`        which input channels some weight reads (a column/in-slice that is not zero),
- `out_value(v)`   the per-output-channel constant the layer computes where its weights for
                   the channel are zero (NaN where the value is not a known constant),
- `can_fold()`     whether a non-zero constant input channel can be folded into the bias exactly,

and `rewrite(...)` makes the sliced weights as new constants (never writing a loaded buffer).
Weights are compared as real values ((q - zero_point) * scale for quantized ones), so -0.0
counts as zero.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.reference.kernels import ACTIVATIONS, CLAMPING

LAYER_TYPES = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "UNIDIRECTIONAL_SEQUENCE_LSTM")
_LSTM_W, _LSTM_U, _LSTM_B = (1, 2, 3, 4), (5, 6, 7, 8), (12, 13, 14, 15)
_LSTM_ABSENT = (9, 10, 11, 16, 17, 20, 21, 22, 23)
_CELL_GATE = 2  # gates are i, f, c, o


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """A fused activation applied to known constants (NaN = unknown stays unknown), as the
    clamping kernels (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, pooling, ...) apply
    it. LiteRT and TFLM ignore TANH and SIGN_BIT there (an unbounded range) or refuse them:
    no constant is claimed for those."""
    return ACTIVATIONS[name](x) if name in CLAMPING else np.full_like(x, np.nan)


def real(t: Tensor) -> np.ndarray | None:
    """A constant's real values as float64 (dequantized when quantized), None if unknown."""
    data = t.data if t is not None else None
    if data is None or data.shape != tuple(t.shape):
        return None
    x = data.astype(np.float64)
    if not t.is_quantized or data.dtype.kind == "f":
        return x
    q = t.quantization
    scale = np.asarray(q["scale"], np.float64)
    zp = np.asarray(q.get("zero_point", np.zeros(1)), np.float64)
    if zp.size == 0:
        zp = np.zeros(1)
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[int(q.get("quantized_dimension", 0))] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp.size == scale.size else zp.reshape(-1)[:1]
    return (x - zp) * scale


def slice_constant(sg: Subgraph, t: Tensor, keeps: dict, add: np.ndarray | None = None) -> Tensor:
    """A new constant: `t` (plus `add`, float only) with boolean masks `keeps[axis]` applied
    (`t` itself when nothing changes). Per-axis quantization parameters along a sliced axis
    are sliced with it."""
    if add is None and all(keep is None or keep.all() for keep in keeps.values()):
        return t
    data = np.asarray(t.data)
    if add is not None:
        data = (data.astype(np.float64) + add).astype(data.dtype)
    quant = dict(t.quantization) if t.quantization else None
    for axis, keep in sorted(keeps.items()):
        if keep is None or keep.all():
            continue
        data = np.compress(keep, data, axis=axis)
        if quant and int(quant.get("quantized_dimension", 0)) == axis:
            for key in ("scale", "zero_point", "min", "max"):
                v = quant.get(key)
                if v is not None and len(v) == keep.size and keep.size > 1:
                    quant[key] = np.asarray(v)[keep]
    return sg.new_constant(data, t.name, quantization=quant)


class Layer:
    """One weighted op: data input `x`, output `y`, and its weight tensors."""

    def __init__(self, op: Operator, sg: Subgraph):
        self.op, self.sg = op, sg
        self.kind = op.type
        self.x, self.y = op.inputs[0], op.outputs[0]

    # ---- recognition
    @classmethod
    def of(cls, sg: Subgraph, op: Operator) -> Layer | None:
        """The op as a Layer, or None when its form is not one we can slice exactly."""
        if op.type not in LAYER_TYPES or len(op.outputs) != 1 or op.outputs[0] is None:
            return None
        x, y = op.inputs[0], op.outputs[0]
        if x is None or x.is_constant or not x.shape or not y.shape:
            return None
        if op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return cls._lstm(sg, op)
        w = op.inputs[1] if len(op.inputs) > 1 else None
        b = op.inputs[2] if len(op.inputs) > 2 else None
        if w is None or real(w) is None or (b is not None and real(b) is None):
            return None
        cin = x.shape[-1]
        if op.type == "FULLY_CONNECTED":
            ok = w.data.ndim == 2 and w.shape[1] == cin and op.option("weights_format", 0) == 0
        elif op.type == "CONV_2D":
            ok = w.data.ndim == 4 and w.shape[3] == cin
        else:
            ok = w.data.ndim == 4 and w.shape[3] == cin == y.shape[-1]
        ok = ok and y.shape[-1] == w.shape[0 if op.type != "DEPTHWISE_CONV_2D" else 3]
        return cls(op, sg) if ok else None

    @classmethod
    def _lstm(cls, sg: Subgraph, op: Operator) -> Layer | None:
        ins = op.inputs + [None] * (24 - len(op.inputs))
        if any(ins[i] is not None for i in _LSTM_ABSENT) or len(op.inputs) > 24:
            return None
        consts = [ins[i] for i in _LSTM_W + _LSTM_U + _LSTM_B]
        if any(t is None or t.data is None or t.data.dtype != np.float32 for t in consts):
            return None
        if ins[0].type != consts[0].type or op.intermediates:
            return None
        states = (ins[18], ins[19])
        if any(s is None or not s.is_variable or sg.consumers(s) != [op] for s in states):
            return None
        u, f = consts[0].shape[0], ins[0].shape[-1]
        shapes_ok = all(t.shape == (u, f) for t in consts[:4])
        shapes_ok &= all(t.shape == (u, u) for t in consts[4:8])
        shapes_ok &= all(t.shape == (u,) for t in consts[8:])
        if not shapes_ok or op.outputs[0].shape[-1] != u:
            return None
        return cls(op, sg)

    @property
    def hybrid(self) -> bool:
        """Quantized weights applied to a float input (dynamic-range quantization)."""
        w = self.op.inputs[1]
        floats = ("FLOAT32", "FLOAT16")
        return self.x.type_name in floats and w.is_quantized and w.type_name not in floats

    # ---- weights as real values
    def weights(self) -> list[np.ndarray]:
        """Input weights: [out, ..., in] arrays (one per gate for LSTM, DW as [C, h*w])."""
        if self.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return [real(self.op.inputs[i]) for i in _LSTM_W]
        w = real(self.op.inputs[1])
        if self.kind == "DEPTHWISE_CONV_2D":
            return [w.reshape(-1, w.shape[3]).T]
        return [w]

    def bias(self, gate: int = 0) -> np.ndarray:
        op = self.op
        if self.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return real(op.inputs[_LSTM_B[gate]])
        b = op.inputs[2] if len(op.inputs) > 2 else None
        return real(b) if b is not None else np.zeros(self.y.shape[-1])

    def reads(self) -> np.ndarray:
        """Per input channel: does a non-zero weight read it (FC/CONV/LSTM input side).
        A hybrid layer (quantized weights, float input) quantizes its input at run time
        with a range taken over all channels, so every non-zero channel counts as read."""
        if self.hybrid:
            return np.ones(self.x.shape[-1], bool)
        mask = np.zeros(self.x.shape[-1], bool)
        for w in self.weights():
            mask |= (w != 0).reshape(-1, w.shape[-1]).any(axis=0)
        return mask

    def recurrent_reads(self) -> np.ndarray:
        """LSTM: per hidden unit, does a recurrent weight read h[unit]."""
        mask = np.zeros(self.y.shape[-1], bool)
        for i in _LSTM_U:
            mask |= real(self.op.inputs[i]).any(axis=0)
        return mask

    def out_value(self, x_value: np.ndarray, c0: np.ndarray | None = None) -> np.ndarray:
        """Per output channel, the constant the layer outputs (NaN if not constant); for an
        LSTM, `c0` is the known value of the initial cell state per unit (NaN = unknown)."""
        act = self.op.activation
        if self.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            # h = o * act(c), c' = f*c + i*act(W_c x + U_c h + b_c): a unit whose cell-gate
            # weights and bias are zero keeps c = 0 from an initial c that is zero, so h = 0.
            # From any other initial c it decays but is not zero (h reached 0.42 in a decoder).
            dead = self.idle_units() & (c0 == 0)
            zero = act == "TANH" or activation(act, np.zeros(1))[0] == 0  # the LSTM applies TANH
            return np.where(dead & zero, 0.0, np.nan)
        w = self.weights()[0]
        zero_rows = ~(w != 0).reshape(w.shape[0], -1).any(axis=1)
        pre = np.where(zero_rows, self.bias(), np.nan)
        if self.kind == "DEPTHWISE_CONV_2D":
            # zero input (padding is zero too) or a constant input through exact windows
            known = np.isfinite(x_value) & ((x_value == 0) | self.window_exact())
            pre = np.where(~zero_rows & known, x_value * w.sum(axis=1) + self.bias(), pre)
        return activation(act, pre)

    def idle_units(self) -> np.ndarray:
        """LSTM: per unit, are its cell-gate weights (input and recurrent) and bias all zero
        (the unit adds nothing to c, so c keeps decaying from its initial value)."""
        op, g = self.op, _CELL_GATE
        idle = ~(real(op.inputs[_LSTM_W[g]]).any(1) | real(op.inputs[_LSTM_U[g]]).any(1))
        return idle & (self.bias(g) == 0)

    def window_exact(self) -> bool:
        """Every output window lies inside the input: VALID padding or a 1x1 kernel."""
        if self.kind in ("FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM"):
            return True
        w = self.op.inputs[1].shape
        return self.op.option("padding", 0) == 1 or tuple(w[1:3]) == (1, 1)

    def can_fold(self) -> bool:
        """A non-zero constant input channel can be added into the bias exactly."""
        if self.kind == "DEPTHWISE_CONV_2D" or not self.window_exact():
            return False
        floats = [t for t in self.op.inputs[1:] if t is not None and t.is_constant]
        return self.x.type_name == "FLOAT32" and all(t.type_name == "FLOAT32" for t in floats)

    def fold_delta(self, channels: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
        """Bias increments (per gate for LSTM) of feeding `values` on input `channels`."""
        return [
            w.reshape(w.shape[0], -1, w.shape[-1]).sum(1)[:, channels] @ values
            for w in self.weights()
        ]

    # ---- rewrite
    def rewrite(self, keep_in, keep_out, delta=None) -> None:
        """Slice the weights to the kept input/output channels, adding the folded `delta`."""
        op, sg = self.op, self.sg
        if self.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            for g in range(4):
                sg.set_input(
                    op,
                    _LSTM_W[g],
                    slice_constant(sg, op.inputs[_LSTM_W[g]], {0: keep_out, 1: keep_in}),
                )
                sg.set_input(
                    op,
                    _LSTM_U[g],
                    slice_constant(sg, op.inputs[_LSTM_U[g]], {0: keep_out, 1: keep_out}),
                )
                add = None if delta is None else delta[g]
                sg.set_input(
                    op, _LSTM_B[g], slice_constant(sg, op.inputs[_LSTM_B[g]], {0: keep_out}, add)
                )
            return
        last = 3 if self.kind != "FULLY_CONNECTED" else 1
        if self.kind == "DEPTHWISE_CONV_2D":
            sg.set_input(op, 1, slice_constant(sg, op.inputs[1], {3: keep_out}))
        else:
            sg.set_input(op, 1, slice_constant(sg, op.inputs[1], {0: keep_out, last: keep_in}))
        b = op.inputs[2] if len(op.inputs) > 2 else None
        if b is not None:
            add = None if delta is None else delta[0]
            sg.set_input(op, 2, slice_constant(sg, b, {0: keep_out}, add))
        elif delta is not None:  # no bias yet: the folded constants become one
            bias = delta[0] if keep_out is None else delta[0][keep_out]
            sg.set_input(op, 2, sg.new_constant(bias.astype(np.float32), f"{self.y.name}/bias"))

    def states(self) -> list[Tensor]:
        """An LSTM's variable state tensors h and c (none for other layers)."""
        return [self.op.inputs[18], self.op.inputs[19]] if self.kind.startswith("UNI") else []
