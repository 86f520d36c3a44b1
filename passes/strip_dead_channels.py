"""Physically remove dead neurons and filters (channel-pruned or zeroed channels).

Pattern:   channel classes found by tflgraph/channels/graph.py (dependency groups through
           activations, pooling, MEAN, PAD, STRIDED_SLICE, depthwise convs, ADD/SUB/MUL/
           MAXIMUM, CONCATENATION, SPLIT, flattening RESHAPEs and WHILE loop-carried
           operands) that are *dead*: no consumer weight reads them, or their value is a known
           constant (a producer whose weights for the channel are all zero outputs act(bias);
           an LSTM unit whose cell-gate weights and bias are zero keeps h = c = 0) that every
           consumer absorbs exactly.
Rewrite:   slice the weight rows of the producers (FULLY_CONNECTED [out, in], CONV_2D
           [out, h, w, in], UNIDIRECTIONAL_SEQUENCE_LSTM gates, recurrent matrices, biases and
           states), the columns / input slices of the consumers, DEPTHWISE_CONV_2D kernels,
           per-channel constant operands (bias ADDs, initial loop states) and per-channel
           quantization scales and zero points; add a constant channel k into each consumer's
           bias (bias += W[:, c] * k, summed over the kernel); shrink the shapes of every
           tensor of the class (in WHILE cond/body subgraphs too) and fix RESHAPE shapes and
           STRIDED_SLICE ends. Repeated to a fixed point: removing a consumer's columns can
           leave more producer channels unread.
Proof:     exact by construction (a removed channel contributes exactly zero, or exactly its
           folded constant, to every consumer; channel-wise ops compute the kept channels as
           before), AND checked on the reference interpreter for every round, on the region
           the round changes (tflgraph/channels/check.py): the ops it touches that the
           interpreter can evaluate, before and after, on seeded random inputs, three invokes
           in a row, so a fused LSTM is checked even beside a TopK head, a hybrid layer or a
           Flex op. A mismatch undoes the round (a snapshot of the graph, weights shared); a
           round of which no op can be evaluated (all quantized) is not applied.
           A fused LSTM's state tensors go with its units together with the op that writes
           them (FILL's dims, a RESHAPE copy of the initial state, the producer); a unit is
           only constant (h = c = 0) where its initial cell state is known to be zero.
Invariant: entry-subgraph inputs and outputs keep their shapes (a state that is a model
           output keeps its units); ops outside the classes (anything not listed above) are
           never touched; loaded buffers are never written.
           `--explain` lists the zero-weight channels that stay and why.
"""

from __future__ import annotations

import numpy as np

from tflgraph.channels.analysis import analyze
from tflgraph.channels.check import RoundCheck
from tflgraph.channels.graph import Removal
from tflgraph.channels.layers import slice_constant
from tflgraph.ir import Model, Snapshot, Subgraph, Tensor
from tflgraph.pipeline import Pass, register

MAX_ROUNDS = 16


@register("strip-dead-channels")
class StripDeadChannels(Pass):
    """Remove dead neurons/filters: unread or constant channels, folded exactly."""

    def run(self, model: Model) -> bool:
        before = weight_bytes(model)
        layers: dict[str, dict] = {}
        changed = False
        self._kept: list[str] = []
        for _ in range(MAX_ROUNDS):
            if not self._round(model, layers):
                break
            changed = True
        for line in self._kept:  # the last analysis: zero-weight channels that had to stay
            self.explain(line)
        if changed:
            self.stats = {"layers": layers, "bytes_saved": before - weight_bytes(model)}
        return changed

    def _round(self, model: Model, layers: dict) -> bool:
        graph = analyze(model)
        plan = graph.removal()
        self._kept = plan.kept
        if not plan.keep:
            return False
        check = RoundCheck(model, graph, plan)  # evaluates the region before the round
        why = check.why
        if why is None:
            undo = Snapshot(model)
            counts = apply(plan)
            why = check.after()
            if why is not None:
                undo.restore()
        if why is not None:
            self.explain(f"channel removal left as it was: {why}")
            return False
        for name, (kind, n_out, n_in) in counts.items():
            entry = layers.setdefault(name, {"op": kind, "out_channels": 0, "in_channels": 0})
            entry["out_channels"] += n_out
            entry["in_channels"] += n_in
        return True

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """Readable lines for the optimize summary."""
        lines = []
        for name, s in stats.get("layers", {}).items():
            parts = [
                f"{s[k]} {k.split('_')[0]}put" for k in ("out_channels", "in_channels") if s[k]
            ]
            lines.append(f"{name} ({s['op']}): removed {' and '.join(parts)} channels")
        return lines + [f"weight bytes saved: {stats.get('bytes_saved', 0):,}"]


def apply(plan: Removal) -> dict:
    """Carry out the plan; returns {layer name: (op type, outputs removed, inputs removed)}."""
    counts = {}
    for layer in plan.layers:
        keep_out = plan.mask(layer.y)
        keep_in = keep_out if layer.kind == "DEPTHWISE_CONV_2D" else plan.mask(layer.x)
        fold = plan.folds.get(layer)
        if keep_in is None and keep_out is None and fold is None:
            continue
        layer.rewrite(keep_in, keep_out, layer.fold_delta(*fold) if fold else None)
        n_out = 0 if keep_out is None else int((~keep_out).sum())
        n_in = 0 if keep_in is None or layer.kind == "DEPTHWISE_CONV_2D" else int((~keep_in).sum())
        name = layer.y.name.split(";")[0]
        _, old_out, old_in = counts.get(name, (layer.kind, 0, 0))
        counts[name] = (layer.kind, old_out + n_out, old_in + n_in)
    for sg, op, kind in plan.edits:
        y = op.outputs[0]
        keep = plan.mask(y)
        if keep is None:
            continue
        if kind == "binary":
            for i, t in enumerate(op.inputs):
                if t is not None and t.is_constant and t.shape and t.shape[-1] > 1:
                    sg.set_input(op, i, slice_constant(sg, t, {len(t.shape) - 1: keep}))
        elif kind == "reshape":
            _new_shape(sg, op, len(keep) - int(keep.sum()), y.shape[-1])
        elif kind == "strided_slice":
            _clamp_end(sg, op, int(keep.sum()))
        elif kind == "fill":
            dims = np.array(op.inputs[0].data, copy=True)
            dims[-1] = int(keep.sum())
            sg.set_input(op, 0, sg.new_constant(dims, op.inputs[0].name))
    for sg, op, i in plan.constants:  # constant loop operands (initial states)
        t = op.inputs[i]
        if plan.mask(t) is not None:
            sg.set_input(op, i, slice_constant(sg, t, {len(t.shape) - 1: plan.mask(t)}))
    for t, keep in plan.keep.items():
        if not t.is_constant:
            _shrink(t, keep)
    return counts


def _shrink(t: Tensor, keep: np.ndarray) -> None:
    n = int(keep.sum())
    t.shape = tuple(t.shape[:-1]) + (n,)
    if t.shape_signature is not None and len(t.shape_signature):
        t.shape_signature = tuple(t.shape_signature[:-1]) + (n,)


def _new_shape(sg: Subgraph, op, removed: int, old_last: int) -> None:
    """RESHAPE: the target's last dimension loses `removed` positions (unless it is -1)."""
    new_last = old_last - removed
    shape_t = op.inputs[1] if len(op.inputs) > 1 else None
    if shape_t is not None and shape_t.is_constant:
        dims = np.array(shape_t.data, copy=True)
        if dims.size and dims[-1] != -1:
            dims[-1] = new_last
            sg.set_input(op, 1, sg.new_constant(dims, shape_t.name))
    new_shape = op.option("new_shape")
    if new_shape is not None and len(new_shape):
        dims = np.array(new_shape, copy=True)
        if dims[-1] != -1:
            dims[-1] = new_last
            op.options["new_shape"] = dims


def _clamp_end(sg: Subgraph, op, channels: int) -> None:
    """STRIDED_SLICE reading the whole channel axis: an explicit end is set to the new size."""
    rank = len(op.inputs[0].shape)
    if op.option("end_mask", 0) & (1 << (rank - 1)):
        return
    end = np.array(op.inputs[2].data, copy=True)
    if end[-1] > channels:
        end[-1] = channels
        sg.set_input(op, 2, sg.new_constant(end, op.inputs[2].name))


def weight_bytes(model: Model) -> int:
    """Bytes of the distinct constant buffers that ops read."""
    seen = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            for t in op.inputs:
                if t is not None and t.is_constant:
                    seen[id(t.buffer)] = t.buffer.nbytes
    return sum(seen.values())
