"""Split BIDIRECTIONAL_SEQUENCE_LSTM, which TFLM lacks, into two UNIDIRECTIONAL_SEQUENCE_LSTM.

Pattern:   y = BIDIRECTIONAL_SEQUENCE_LSTM(x, fw weights, bw weights, fw h, fw c, bw h, bw c)
           in float32, without aux input, peepholes or projection (TFLM's LSTM has neither),
           merged ([.., fw_u + bw_u]) or two outputs; onnx2tf 2.x writes it for a
           bidirectional ONNX (PyTorch) LSTM.
Rewrite:   fw = UNIDIRECTIONAL_SEQUENCE_LSTM(x, fw weights, fw h, fw c)
           bw = REVERSE_V2(UNIDIRECTIONAL_SEQUENCE_LSTM(REVERSE_V2(x, t), bw weights, bw h,
                bw c), t)                                      t: the time axis
           y = CONCATENATION([fw, bw], axis -1) (merge_outputs), else y_fw = fw, y_bw = bw;
           readers of SPLIT(y) into its halves on the last axis read fw and bw instead.
           Each direction keeps its own variable state tensors, so the file keeps state
           across invokes exactly when the original did (onnx2tf 2.x's zero states are
           variable tensors without a producer: the original carries the last invoke's state
           into the next; a state an op writes every invoke is reset as before).
           Ops that read a final state after the op (onnx2tf's Y_h) read the output's last
           step instead (fw: STRIDED_SLICE at the last time step, bw: at the first): h is
           the output, and a reader of a state needs no order against the LSTM that writes
           it in place (LiteRT's XNNPACK runs such a reader before the LSTM).
           `reset_states` (opt-in) re-zeroes producer-free states every invoke with FILL,
           as fuse-lstm's loops do: the ONNX semantics onnx2tf's file lost.
Exact:     LiteRT's bidirectional kernel runs the forward cell over x and the backward cell
           over x from the last step to the first, writing the backward output at each step's
           own time index: the unidirectional kernel on REVERSE_V2(x) computes the same
           steps in the same order with the same arithmetic, and REVERSE_V2 copies values.
Checked:   the new outputs are evaluated against the old on the reference interpreter with
           the same random x and states (check_equal); a mismatch leaves the op.
Target:    `tflm` and `any`; `litert` keeps the op, which it runs.
Invariant: model outputs equal the original's (1e-5), invoke after invoke without reset
           (with reset_states: with a reset between samples).
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.legalize import RewriteForTflm
from tflgraph.pipeline import Option, register
from tflgraph.reference.equivalence import check_equal, random_feed, region_inputs
from tflgraph.reference.kernels_nn import BIDI_AUX, BIDI_BW, BIDI_FW, BIDI_STATES
from tflgraph.rnn.fused import zeroed_every_invoke

# per direction, the operand slices after the input: weights, peepholes, biases, projection
_PEEPHOLES, _PROJECTION = slice(8, 11), slice(15, 17)
_OPTIONS = ("fused_activation_function", "cell_clip", "proj_clip", "time_major")


@register("split-bidirectional-lstm")
class SplitBidirectionalLstm(RewriteForTflm):
    """Rewrite BIDIRECTIONAL_SEQUENCE_LSTM as two UNIDIRECTIONAL_SEQUENCE_LSTM (TFLM)."""

    op_type, kept = "BIDIRECTIONAL_SEQUENCE_LSTM", "runs BIDIRECTIONAL_SEQUENCE_LSTM"
    reset_states = Option(
        False,
        "re-zero states that are zero only at allocation (variable tensors without a "
        "producer) every invoke: stateless, as the ONNX/PyTorch model was",
        carries_state=True,
    )

    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        y = op.outputs[0]
        why = _refusal(sg, op)
        if why:
            self.explain(f"{op.type} -> {y.name}: {why}")
            return False
        split = _Split(sg, op)
        old = [t for t in op.outputs if t is not None]
        why = check_equal(sg, old, split.outputs[: len(old)], feeds=split.feeds, region=split.made)
        if why is not None:
            self.explain(f"{op.type} -> {y.name}: refused: {why}")
            return False  # the new ops are dead: the pipeline removes them
        split.commit(self.reset_states)
        if len(split.outputs) == 1:
            _bypass_splits(sg, y, split.fw, split.bw)
        for t, new in zip(old, split.outputs):
            sg.replace_all_uses(t, new, keep_name=True)
        sg.remove_op(op)  # dead code removal keeps an op that writes variable tensors
        return True


def _refusal(sg: Subgraph, op: Operator) -> str | None:
    """Why the op is not split (None: it is)."""
    w = op.inputs
    if any(t is not None for t in w[BIDI_AUX]):
        return "has an aux input"
    weights = [t for t in (*w[BIDI_FW], *w[BIDI_BW]) if t is not None]
    if w[0].dtype != np.float32 or any(t.dtype != np.float32 for t in weights):
        return "not float32 (TFLM's LSTM has no hybrid kernel)"
    for k in (BIDI_FW, BIDI_BW):
        own = w[k]
        if any(t is not None for t in (*own[_PEEPHOLES], *own[_PROJECTION])):
            return "has peepholes or a projection (TFLM's LSTM has neither)"
        if own[0] is None:
            return "is CIFG (no input gate)"
    if any(w[k] is None or not w[k].is_variable for k in BIDI_STATES):
        return "a state is not a variable tensor"
    order = {o: i for i, o in enumerate(sg.operators)}
    for k in BIDI_STATES:
        for reader in sg.consumers(w[k]):
            if reader is not op and (order[reader] < order[op] or k in (36, 38)):
                return f"state {w[k].name} is read by {reader.type} other than as a final h"
    return None


def _bypass_splits(sg: Subgraph, y: Tensor, fw: Tensor, bw: Tensor) -> None:
    """Readers of SPLIT(y) into its two halves on the last axis (onnx2tf 2.x splits the
    merged output right away) read fw and bw themselves: the halves are copies of them."""
    for p in sg.consumers(y):
        axis = p.inputs[0] if p.type == "SPLIT" else None
        last = axis is not None and axis.is_constant and axis.data.size == 1
        last = last and int(axis.data.reshape(-1)[0]) in (2, -1)
        if last and p.inputs[1] is y and fw.shape == bw.shape and len(p.outputs) == 2:
            for half, new in zip(p.outputs, (fw, bw)):
                sg.replace_all_uses(half, new, keep_name=True)


class _Split:
    """The new ops for one BIDIRECTIONAL_SEQUENCE_LSTM, reading copies of its states (the
    reference interpreter writes a variable state in place, so the old op and the new ones
    must not share them while they are compared); `commit` hands them the real states."""

    def __init__(self, sg: Subgraph, op: Operator):
        self.sg, self.op, self.made = sg, op, {op}
        w, y = op.inputs, op.outputs[0]
        self.axis = 0 if op.option("time_major") else 1
        self.name = y.name
        self.copies: dict[Tensor, Tensor] = {}  # copy -> the state it stands for
        self.time_axis = sg.new_constant(np.array([self.axis], np.int32), f"{y.name}/time_axis")
        fw = self._lstm(w[0], w[BIDI_FW], w[35], w[36], "fw")
        bw = self._reverse(self._lstm(self._reverse(w[0]), w[BIDI_BW], w[37], w[38], "bw"))
        self.fw, self.bw = fw, bw
        if op.option("merge_outputs"):
            merged = self._new("merged", (*fw.shape[:2], fw.shape[2] + bw.shape[2]))
            self._add("CONCATENATION", [fw, bw], merged, {"axis": 2})
            self.outputs = [merged]
        else:
            self.outputs = [fw, bw]

    def feeds(self, rng: np.random.Generator) -> dict:
        """Random x and states for the old op, the same values for the copies."""
        values = {t: random_feed(t, rng) for t in region_inputs(self.sg, {self.op})}
        values.update({copy: values[state] for copy, state in self.copies.items()})
        return values

    def commit(self, reset_states: bool) -> None:
        """Give the new LSTMs the op's states (re-zeroed every invoke if `reset_states` and
        neither an op nor a feed writes them), and move the readers of each final h onto the
        output's last step."""
        sg, state_of = self.sg, self.op.inputs
        readers = {k: [p for p in sg.consumers(state_of[k]) if p is not self.op] for k in (35, 37)}
        for lstm in (o for o in self.made if o.type == "UNIDIRECTIONAL_SEQUENCE_LSTM"):
            for k in (18, 19):
                state = self.copies[lstm.inputs[k]]
                if reset_states and sg.producer(state) is None and state not in sg.inputs:
                    state = zeroed_every_invoke(sg, state)
                sg.set_input(lstm, k, state)
        for k, seq, step in ((35, self.fw, -1), (37, self.bw, 0)):
            last = self._step(seq, step) if readers[k] else None
            for reader in readers[k]:
                for i, t in enumerate(reader.inputs):
                    if t is state_of[k]:
                        sg.set_input(reader, i, last)

    def _lstm(self, x: Tensor, w, h: Tensor, c: Tensor, tag: str) -> Tensor:
        copies = []
        for state in (h, c):
            copy = self.sg.new_tensor(f"{state.name}/probe", state.shape)
            self.copies[copy] = state
            copies.append(copy)
        units = w[0].shape[0]
        shape = (*x.shape[:2], units)
        out = self._new(tag, shape)
        options = {k: self.op.option(k) for k in _OPTIONS}
        self._add("UNIDIRECTIONAL_SEQUENCE_LSTM", [x, *w, *copies, *[None] * 4], out, options)
        return out

    def _reverse(self, x: Tensor) -> Tensor:
        out = self._new(f"{x.name.rsplit('/', 1)[-1]}_reversed", x.shape)
        self._add("REVERSE_V2", [x, self.time_axis], out)
        return out

    def _step(self, seq: Tensor, step: int) -> Tensor:
        """STRIDED_SLICE(seq) at time index `step`, the time axis shrunk: [B, u]."""
        begin = np.zeros(3, np.int32)
        begin[self.axis] = step
        ends = ((begin, "begin"), (np.zeros(3, np.int32), "end"), (np.ones(3, np.int32), "stride"))
        consts = [self.sg.new_constant(v, f"{self.name}/{n}") for v, n in ends]
        out = self._new(
            f"{seq.name.rsplit('/', 1)[-1]}_h", (seq.shape[1 - self.axis], seq.shape[2])
        )
        mask = 0b111 & ~(1 << self.axis)  # shrink_axis: one step, whatever `end` says
        options = {"begin_mask": mask, "end_mask": mask, "shrink_axis_mask": 1 << self.axis}
        self.sg.add_op("STRIDED_SLICE", [seq, *consts], [out], options)
        return out

    def _new(self, tag: str, shape) -> Tensor:
        return self.sg.new_tensor(f"{self.name}/{tag}", tuple(shape), "float32")

    def _add(self, op_type: str, inputs, out: Tensor, options=None) -> None:
        self.made.add(self.sg.add_op(op_type, inputs, [out], options))
