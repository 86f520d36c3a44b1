"""Give a model output that is a fused LSTM's last step straight from its output-state tensor.

Pattern:   o = STRIDED_SLICE(y)[last step], y = UNIDIRECTIONAL_SEQUENCE_LSTM(x, ..., h, c, ...)
           in float32 without projection, o read by no op (only as subgraph outputs); h is a
           variable tensor that an op (re)sets every invoke (FILL or RESHAPE from fuse-lstm),
           read by no op but this LSTM and, for a chunked LSTM (chunk-sequence-lstm), the
           fused LSTMs before it on the same states; this LSTM runs last of them.
Rewrite:   the subgraph outputs read h instead of o (the two swap names, so callers see the
           same output); the STRIDED_SLICE goes, and with it its output tensor and its three
           constants: in TFLM one node, four tensors and the [B, u] output less (k3_lstm:
           3,632 -> 3,360 bytes of arena, the converter's own fused LSTM needs 3,456).
Proof:     without projection the kernel's output at step t is h_t, and it leaves the last
           step's h_T in the variable tensor h (TFLite's and TFLM's LSTM kernels both copy the
           output state into it after every step); nothing writes h after the last LSTM that
           reads it, and a model output is read after the invoke. So h holds o, bit for bit.
Invariant: every model output is bit-identical under the same name, invoke after invoke (h is
           reset by its producer at the start of every invoke, as before).
"""

from __future__ import annotations

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.rnn.fused import H_STATE, PROJECTION, is_last_step, time_axis


@register("lstm-output-from-state")
class LstmOutputFromState(Pass):
    """A model output that is a fused LSTM's last step reads its output-state tensor."""

    def run(self, model: Model) -> bool:
        moved = 0
        for sg in model.subgraphs:
            for op in sg.ops_of_type("STRIDED_SLICE"):
                h = self._state_for(sg, op)
                if h is not None:
                    sg.replace_all_uses(op.outputs[0], h, keep_name=True)
                    moved += 1
        self.stats = {"outputs_moved": moved}
        return bool(moved)

    def _state_for(self, sg: Subgraph, p: Operator) -> Tensor | None:
        """The output-state tensor holding p's result after the invoke, or None."""
        out, y = p.outputs[0], p.inputs[0]
        lstm = sg.producer(y)
        if lstm is None or lstm.type != "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return None
        if sg.consumers(out) or not any(t is out for t in sg.outputs):
            return None
        if not is_last_step(p, y, time_axis(lstm)):
            return None
        h = lstm.inputs[H_STATE]
        why = None
        if y.type_name != "FLOAT32" or lstm.inputs[PROJECTION] is not None:
            why = "not a float32 LSTM without projection"
        elif h is None or not h.is_variable or sg.producer(h) is None:
            why = "its output state is not reset by an op every invoke"
        elif any(t is h for t in sg.inputs + sg.outputs):
            why = "its output state is a subgraph input or output already"
        elif not _last_writer(sg, lstm, h):
            why = "another op reads its output state after it"
        if why is not None:
            self.explain(f"{out.name}: left as a slice of {y.name}: {why}")
            return None
        return h


def _last_writer(sg: Subgraph, lstm: Operator, h: Tensor) -> bool:
    """The LSTM is the last op, in execution order, of the fused LSTMs that read h (and no
    other op reads h)."""
    readers = sg.consumers(h)
    if any(r.type != "UNIDIRECTIONAL_SEQUENCE_LSTM" for r in readers):
        return False
    order = {op: i for i, op in enumerate(sg.operators)}
    return max(readers, key=order.__getitem__) is lstm
