"""Channel dependency analysis: which channels of a model can be removed together.

Every non-constant tensor that a channel-aware op touches gets one *slot* per channel of its
last axis. Ops tie slots together in a union-find (as Torch-Pruning's DepGraph groups
coupled channels); each resulting *class* is removed from every tensor in it, or not at all.

The per-op rules are rows of a table in tflgraph/channels/ops.py, the weighted layers live in
tflgraph/channels/layers.py and WHILE loops in tflgraph/channels/loops.py; this module holds the
slots, the values and the decision, and tflgraph/channels/analysis.py walks a model with them.

- identity ties (channel c <-> channel c): RELU-like activations, LOGISTIC, TANH,
  MAX/AVERAGE_POOL_2D, MEAN over non-channel axes, PAD without padding on the channel axis,
  STRIDED_SLICE keeping the whole channel axis, DEPTHWISE_CONV_2D (multiplier 1), and
  ADD/SUB/MUL/MAXIMUM, which couple both operands with the output (a per-channel constant
  operand is sliced along);
- mappings: CONCATENATION on the channel axis maps ranges; SPLIT on the channel axis maps
  ranges and ties position m of every part (so the parts stay equal); a RESHAPE whose output's
  last dimension is a multiple M*C of its input's C (a flatten [B,H,W,C] -> [B,H*W*C]) maps
  input channel c to output positions c, c+C, ..., c+(M-1)C, because NHWC flattening keeps the
  channel as the fastest-varying index;
- WHILE (tflgraph/channels/loops.py) ties each loop-carried operand's initial value, cond and
  body argument, body result and loop result, so a recurrent state's unit is one class with
  everything the body computes for it;
- boundaries: FULLY_CONNECTED, CONV_2D and UNIDIRECTIONAL_SEQUENCE_LSTM read channels with
  their weights (consumer side) and write them with their weight rows (producer side); an
  LSTM's variable state tensors h and c are tied to its output, and so to the op that writes
  them each invoke (FILL, a RESHAPE copy of the initial state, or the producer itself): a unit
  is removed from the state, its writer and everything the writer reads, or not at all;
- every other op and the inputs and outputs of top-level subgraphs *block* their slots (a
  state that is a model output keeps its units).

Values: in execution order, each tensor gets per channel the constant it is known to hold
(NaN = not known): a layer's channel whose weights are all zero holds act(bias), and the ops
above map constants through (quantized tensors only keep an exact 0; loop-carried values are
the fixed point of the body started from the initial values; an LSTM unit is constant only
where its initial cell state is known to be zero, see tflgraph/channels/layers.py).

A class is removable when none of its slots is blocked and at every consumer boundary the
channel is either not read (the weights for it are all zero) or holds a known constant that
the consumer absorbs exactly: 0 always (zero padding adds zero too), another constant only by
adding W[:, c] * k (summed over the kernel) to the bias of a float FC/LSTM or of a CONV whose
windows never cross a padding border (VALID or 1x1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tflgraph.channels.layers import Layer, real
from tflgraph.ir import Operator, Subgraph, Tensor

ValueFn = Callable[[], None]  # computes an op's output values from its input values


@dataclass
class Removal:
    """What to remove: per tensor a keep mask, per consumer layer the constants to fold."""

    keep: dict = field(default_factory=dict)  # Tensor -> bool mask over its channels
    folds: dict = field(default_factory=dict)  # Layer -> (channels, values)
    layers: list = field(default_factory=list)  # every Layer of the model
    edits: list = field(default_factory=list)  # (subgraph, op, kind) of ops to adjust
    constants: list = field(default_factory=list)  # (subgraph, op, index): sliced operands
    kept: list = field(default_factory=list)  # why zero-weight channels stay (for --explain)

    def mask(self, t: Tensor) -> np.ndarray | None:
        return self.keep.get(t)


class ChannelGraph:
    """Slots, ties and values of one model; tflgraph.channels.analysis.analyze fills it."""

    def __init__(self, inner: set[Subgraph], top: list[Subgraph]):
        self.base: dict[Tensor, int] = {}
        self.parent: list[int] = []
        self.blocked: dict[Tensor, str] = {}  # tensor -> why its channels must stay
        self.values: dict[Tensor, np.ndarray] = {}
        self.fns: dict[Operator, ValueFn] = {}
        self.layers: list[Layer] = []
        self.boundaries: list[tuple[Layer, Tensor, np.ndarray]] = []  # (layer, input, reads)
        self.edits: list[tuple[Subgraph, Operator, str]] = []
        self.constants: list[tuple[Subgraph, Operator, int]] = []
        self.inner = inner  # cond/body subgraphs of the loops tied through
        self.top = top  # every other subgraph

    def block(self, tensors, why: str) -> None:
        for t in tensors:
            if t is not None:
                self.blocked.setdefault(t, why)

    # ---- slots
    def slots(self, t: Tensor) -> int | None:
        """First slot of `t` (allocated on first use); None if `t` has no usable channel axis."""
        if t in self.base:
            return self.base[t]
        if not t.shape or t.dtype is None or t.is_constant:
            return None
        dynamic = dynamic_dims(t)  # only a leading batch axis may be dynamic
        if dynamic - {0} or len(t.shape) - 1 in dynamic:
            return None
        return self._allocate(t)

    def const_slots(self, t: Tensor) -> int:
        """Slots for a constant operand that is part of a class (sliced, or blocked)."""
        return self.base[t] if t in self.base else self._allocate(t)

    def _allocate(self, t: Tensor) -> int:
        self.base[t] = len(self.parent)
        self.parent.extend(range(len(self.parent), len(self.parent) + t.shape[-1]))
        return self.base[t]

    def union(self, a: int, b: int, n: int) -> None:
        """Tie slots a + k and b + k for k < n; a class's root is its smallest slot. (Finding
        the roots, with path halving, is inlined: this loop is most of the analysis' time.)"""
        p = self.parent
        for i in range(a, a + n):
            j = i - a + b
            while p[i] != i:
                p[i] = p[p[i]]
                i = p[i]
            while p[j] != j:
                p[j] = p[p[j]]
                j = p[j]
            if i < j:
                p[j] = i
            elif j < i:
                p[i] = j

    # ---- values
    def value(self, t: Tensor) -> np.ndarray:
        v = self.values.get(t)
        if v is None and t.is_constant:
            return uniform_channels(t)
        return v if v is not None else np.full(t.shape[-1], np.nan)

    def set_value(self, t: Tensor, v: np.ndarray) -> None:
        if t.is_quantized:  # quantized activations: only an exact zero is exact
            v = np.where(v == 0, 0.0, np.nan)
        self.values[t] = v

    def run_values(self, sg: Subgraph) -> None:
        with np.errstate(all="ignore"):  # inf/NaN are legitimate "values" here
            for op in sg.operators:
                fn = self.fns.get(op)
                if fn is not None:
                    fn()

    # ---- decision
    def removal(self) -> Removal:
        """The removable classes, as keep masks per tensor and bias folds per consumer;
        `Removal.kept` says why channels with all-zero weights stay."""
        n = len(self.parent)
        why = np.full(n, None, object)
        for t, reason in self.blocked.items():
            if t in self.base:
                why[self._span(t)] = reason
        for layer, t, reads in self.boundaries:
            v = self.value(t)
            fold = layer.can_fold() and t is layer.x
            bad = reads & (v != 0) & ~(np.isfinite(v) & fold)
            span = why[self._span(t)]
            who = f"read by {layer.kind} {_name(layer.y)}"
            free = span == None  # noqa: E711
            span[bad & free & np.isnan(v)] = f"{who}, where its value is not constant"
            span[bad & free & np.isfinite(v)] = f"{who}, which cannot fold the constant exactly"
        roots = self._roots()
        removable = ~np.isin(roots, roots[why != None])  # noqa: E711
        for t, b in self.base.items():  # never empty a tensor: keep its first class
            if t.shape[-1] and removable[b : b + t.shape[-1]].all():
                removable[roots == roots[b]] = False
                why[b] = "the last channel of a tensor"
        out = Removal(layers=self.layers, edits=self.edits, constants=self.constants)
        for t in self.base:
            gone = removable[self._span(t)]
            if gone.any():
                out.keep[t] = ~gone
        for layer, t, reads in self.boundaries:
            if t is layer.x and t in out.keep:
                v = self.value(t)
                chans = np.flatnonzero(~out.keep[t] & reads & (v != 0))
                if chans.size:
                    out.folds[layer] = (chans, v[chans])
        class_why: dict = {}  # root -> the reason of its first slot that has one
        has = np.flatnonzero(why != None)  # noqa: E711
        for r, w in zip(roots[has].tolist(), why[has]):
            class_why.setdefault(r, w)
        for layer in self.layers:
            v = self.value(layer.y)
            for c in np.flatnonzero(np.isfinite(v) & ~removable[self._span(layer.y)]):
                reason = class_why.get(roots[self.base[layer.y] + c], "")
                out.kept.append(
                    f"{_name(layer.y)}: channel {c} (constant {v[c]:.4g}) stays: {reason}"
                )
            if layer.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
                for c in np.flatnonzero(layer.idle_units() & np.isnan(v)):
                    out.kept.append(
                        f"{_name(layer.y)}: unit {c} (zero cell-gate weights) stays: its "
                        "initial cell state is not known to be zero, so it is not constant"
                    )
        return out

    def _roots(self) -> np.ndarray:
        """The root of every slot, by pointer jumping (parents only ever point down)."""
        roots = np.array(self.parent, dtype=np.int64)
        while True:
            up = roots[roots]
            if np.array_equal(up, roots):
                return roots
            roots = up

    def _span(self, t: Tensor) -> slice:
        return slice(self.base[t], self.base[t] + t.shape[-1])


def _name(t: Tensor) -> str:
    return repr(t.name.split(";")[0])


def dynamic_dims(t: Tensor) -> set[int]:
    """Axes whose size is only known at run time (-1 in shape_signature)."""
    sig = t.shape_signature
    return set() if sig is None else {i for i, d in enumerate(sig) if d < 0}


def uniform_channels(t: Tensor) -> np.ndarray:
    """Per channel of a constant, its value where it is the same everywhere (else NaN)."""
    r = real(t)
    if r is None:
        return np.full(t.shape[-1] if t.shape else 1, np.nan)
    flat = r.reshape(-1, r.shape[-1]) if r.ndim else r.reshape(1, 1)
    same = (flat == flat[:1]).all(axis=0)
    return np.where(same, flat[0], np.nan)
