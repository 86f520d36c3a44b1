"""Channel dependency analysis: which channels of a subgraph can be removed together.

Every non-constant tensor that a channel-aware op touches gets one *slot* per channel of its
last axis. Ops tie slots together in a union-find (as Torch-Pruning's DepGraph groups
coupled channels); each resulting *class* is removed from every tensor in it, or not at all.

- identity ties (channel c <-> channel c): RELU-like activations, MAX/AVERAGE_POOL_2D, MEAN
  over non-channel axes, PAD without padding on the channel axis, STRIDED_SLICE keeping the
  whole channel axis, DEPTHWISE_CONV_2D (multiplier 1), and ADD/SUB/MUL/MAXIMUM, which couple
  both operands with the output (a per-channel constant operand is sliced along);
- mappings: CONCATENATION on the channel axis maps ranges; a RESHAPE whose output's last
  dimension is a multiple M*C of its input's C (a flatten [B,H,W,C] -> [B,H*W*C]) maps input
  channel c to output positions c, c+C, ..., c+(M-1)C, because NHWC flattening keeps the
  channel as the fastest-varying index;
- boundaries: FULLY_CONNECTED, CONV_2D and UNIDIRECTIONAL_SEQUENCE_LSTM read channels with
  their weights (consumer side) and write them with their weight rows (producer side);
- every other op, subgraph inputs and outputs and variable tensors *block* their slots.

Values: in execution order, each tensor gets per channel the constant it is known to hold
(NaN = not known): a layer's channel whose weights are all zero holds act(bias), and
identity ops map constants through (quantized tensors only keep an exact 0).

A class is removable when none of its slots is blocked and at every consumer boundary the
channel is either not read (the weights for it are all zero) or holds a known constant that
the consumer absorbs exactly: 0 always (zero padding adds zero too), another constant only by
adding W[:, c] * k (summed over the kernel) to the bias of a float FC/LSTM or of a CONV whose
windows never cross a padding border (VALID or 1x1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .channel_layers import Layer, activation, is_quantized, option, real
from .ir import Operator, Subgraph, Tensor

UNARY = {  # channel-wise activations and what they do to a known constant
    "RELU": lambda v: activation(1, v),
    "RELU_N1_TO_1": lambda v: activation(2, v),
    "RELU6": lambda v: activation(3, v),
    "TANH": np.tanh,
    "LOGISTIC": lambda v: 1.0 / (1.0 + np.exp(-v)),
}
BINARY = {
    "ADD": np.add,
    "SUB": np.subtract,
    "MUL": np.multiply,
    "MAXIMUM": np.maximum,
}
POOLS = ("MAX_POOL_2D", "AVERAGE_POOL_2D")


@dataclass
class Removal:
    """What to remove: per tensor a keep mask, per consumer layer the constants to fold."""

    keep: dict = field(default_factory=dict)  # Tensor -> bool mask over its channels
    folds: dict = field(default_factory=dict)  # Layer -> (channels, values)
    layers: list = field(default_factory=list)  # every Layer of the subgraph
    edits: list = field(default_factory=list)  # (op, kind) of identity/mapping ops

    def mask(self, t: Tensor) -> np.ndarray | None:
        return self.keep.get(t)


class ChannelGraph:
    def __init__(self, sg: Subgraph):
        self.sg = sg
        self.base: dict[Tensor, int] = {}
        self.parent: list[int] = []
        self.blocked: set[Tensor] = set(sg.inputs) | set(sg.outputs)
        self.values: dict[Tensor, np.ndarray] = {}
        self.layers: list[Layer] = []
        self.boundaries: list[tuple[Layer, Tensor, np.ndarray]] = []  # (layer, input, reads)
        self.edits: list[tuple[Operator, str]] = []
        for op in sg.operators:
            if not self._visit(op):
                self.blocked.update(t for t in op.inputs + op.outputs if t is not None)

    # ---- slots
    def slots(self, t: Tensor) -> int | None:
        """First slot of `t` (allocated on first use); None if `t` has no usable channel axis."""
        if t in self.base:
            return self.base[t]
        if not t.shape or t.is_dynamic or t.is_variable or t.dtype is None or t.is_constant:
            return None
        self.base[t] = len(self.parent)
        self.parent.extend(range(len(self.parent), len(self.parent) + t.shape[-1]))
        return self.base[t]

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, a: int, b: int, n: int = 1, step_b: int = 1) -> None:
        for k in range(n):
            ra, rb = self.find(a + k), self.find(b + k * step_b)
            if ra != rb:
                self.parent[max(ra, rb)] = min(ra, rb)

    def value(self, t: Tensor) -> np.ndarray:
        v = self.values.get(t)
        return v if v is not None else np.full(t.shape[-1], np.nan)

    def _set_value(self, t: Tensor, v: np.ndarray) -> None:
        if is_quantized(t):  # quantized activations: only an exact zero is exact
            v = np.where(v == 0, 0.0, np.nan)
        self.values[t] = v

    # ---- ops
    def _visit(self, op: Operator) -> bool:
        """Tie the op's slots and compute its output values; False = the op blocks."""
        if len(op.outputs) != 1 or op.outputs[0] is None or op.subgraphs():
            return False
        y = op.outputs[0]
        layer = Layer.of(self.sg, op)
        if layer is not None:
            return self._layer(layer)
        xs = [t for t in op.inputs if t is not None]
        if not xs or self.slots(y) is None:
            return False
        if op.type == "CONCATENATION":
            return self._concat(op, xs, y)
        if op.type == "RESHAPE":
            return self._reshape(xs[0], y, op)
        if op.type in BINARY:
            return self._binary(op, xs, y)
        x = xs[0]
        if self.slots(x) is None or x.shape[-1] != y.shape[-1]:
            return False
        act = option(op, "fused_activation_function")
        if op.type in UNARY and len(xs) == 1:
            v = UNARY[op.type](self.value(x))
            if is_quantized(x) and op.type not in ("RELU", "RELU6", "RELU_N1_TO_1"):
                v = np.full_like(v, np.nan)  # quantized curves: no exactness claimed
        elif op.type in POOLS:
            v = activation(act, self.value(x))
        elif op.type in ("MEAN", "PAD", "STRIDED_SLICE") and self._keeps_channels(op, x):
            v = self.value(x) if op.type != "PAD" else np.where(self.value(x) == 0, 0.0, np.nan)
        else:
            return False
        self.union(self.slots(x), self.slots(y), x.shape[-1])
        self._set_value(y, v)
        if op.type == "STRIDED_SLICE":
            self.edits.append((op, "strided_slice"))
        return True

    def _layer(self, layer: Layer) -> bool:
        x, y = layer.x, layer.y
        if self.slots(x) is None or self.slots(y) is None:
            return False
        self.layers.append(layer)
        if layer.kind == "DEPTHWISE_CONV_2D":
            self.union(self.slots(x), self.slots(y), x.shape[-1])
        else:
            self.boundaries.append((layer, x, layer.reads()))
        if layer.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            self.boundaries.append((layer, y, layer.recurrent_reads()))
        self._set_value(y, layer.out_value(self.value(x)))
        return True

    def _binary(self, op: Operator, xs: list[Tensor], y: Tensor) -> bool:
        c = y.shape[-1]
        if len(xs) != 2:
            return False
        vals = []
        for t in xs:
            if t.is_constant:  # a scalar, or a constant along the channel axis: sliced along
                r = real(t)
                if r is None or (r.size != 1 and (not t.shape or t.shape[-1] != c)):
                    return False
                flat = r.reshape(-1, r.shape[-1]) if r.ndim else r.reshape(1, 1)
                uniform = (flat == flat[:1]).all(axis=0)
                vals.append(np.where(uniform, flat[0], np.nan) * np.ones(c))
            elif self.slots(t) is None or t.shape[-1] != c:
                return False
            else:
                vals.append(self.value(t))
        for t in xs:
            if not t.is_constant:
                self.union(self.slots(t), self.slots(y), c)
        with np.errstate(invalid="ignore"):
            v = BINARY[op.type](vals[0], vals[1])
        self._set_value(y, activation(option(op, "fused_activation_function"), v))
        if any(t.is_constant and t.shape and t.shape[-1] > 1 for t in xs):
            self.edits.append((op, "binary"))
        return True

    def _concat(self, op: Operator, xs: list[Tensor], y: Tensor) -> bool:
        rank = len(y.shape)
        if option(op, "axis") % rank != rank - 1 or option(op, "fused_activation_function"):
            return False
        if any(len(t.shape) != rank or t.is_dynamic for t in xs):
            return False
        if sum(t.shape[-1] for t in xs) != y.shape[-1]:
            return False
        offset, vals = 0, []
        for t in xs:
            if self.slots(t) is None:  # a constant part: its channels stay
                self.blocked.add(t)
                self.base[t] = len(self.parent)
                self.parent.extend(range(len(self.parent), len(self.parent) + t.shape[-1]))
            self.union(self.slots(t), self.slots(y) + offset, t.shape[-1])
            vals.append(self.value(t) if not t.is_constant else np.full(t.shape[-1], np.nan))
            offset += t.shape[-1]
        self._set_value(y, np.concatenate(vals))
        return True

    def _reshape(self, x: Tensor, y: Tensor, op: Operator) -> bool:
        if self.slots(x) is None:
            return False
        c, n = x.shape[-1], y.shape[-1]
        if c == 0 or n % c or int(np.prod(x.shape)) != int(np.prod(y.shape)):
            return False
        for m in range(n // c):
            self.union(self.slots(x), self.slots(y) + m * c, c)
        self._set_value(y, np.tile(self.value(x), n // c))
        self.edits.append((op, "reshape"))
        return True

    def _keeps_channels(self, op: Operator, x: Tensor) -> bool:
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
        if option(op, "ellipsis_mask") or option(op, "new_axis_mask") or option(op, "offset"):
            return False
        if option(op, "shrink_axis_mask") & bit or strides[-1] != 1 or len(begin) != rank:
            return False
        begin_ok = option(op, "begin_mask") & bit or begin[-1] == 0
        end_ok = option(op, "end_mask") & bit or end[-1] >= x.shape[-1]
        return bool(begin_ok and end_ok)

    # ---- decision
    def removal(self) -> Removal:
        """The removable classes, as keep masks per tensor and bias folds per consumer."""
        n = len(self.parent)
        ok = np.ones(n, bool)
        for t in self.blocked:
            if t in self.base:
                ok[self.base[t] : self.base[t] + t.shape[-1]] = False
        for layer, t, reads in self.boundaries:
            v = self.value(t)
            fold = layer.can_fold() and t is layer.x
            fine = ~reads | (v == 0) | (np.isfinite(v) & fold)
            ok[self.base[t] : self.base[t] + t.shape[-1]] &= fine
        roots = np.array([self.find(i) for i in range(n)], dtype=np.int64)
        removable = ~np.isin(roots, roots[~ok])
        changed = True
        while changed:  # never empty a tensor: keep its first class
            changed = False
            for t, b in self.base.items():
                if t.shape[-1] and removable[b : b + t.shape[-1]].all():
                    removable[roots == roots[b]] = False
                    changed = True
        out = Removal(layers=self.layers, edits=self.edits)
        for t, b in self.base.items():
            gone = removable[b : b + t.shape[-1]]
            if gone.any():
                out.keep[t] = ~gone
        for layer, t, reads in self.boundaries:
            if t is layer.x and t in out.keep:
                v = self.value(t)
                chans = np.flatnonzero(~out.keep[t] & reads & (v != 0))
                if chans.size:
                    out.folds[layer] = (chans, v[chans])
        return out
