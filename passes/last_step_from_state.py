"""Read a loop's last output from its state instead of a one-row accumulator.

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops.analyze_loop) with a "last" accumulator:
           each step writes acc' = RESHAPE(h', [1, B, u]) where h' is also the next value of
           a state operand s, and after the loop the caller reads the accumulator only as
           acc[-1] (STRIDED_SLICE, time axis shrunk, [B, u]); the loop runs at least once;
           the final s is not a variable tensor (a fused op after the loop, e.g. a decoder
           fused by fuse-lstm, updates it in place: its readers would see the decoder's h).
Rewrite:   the readers of acc[-1] read the loop's final s instead; the accumulator is then
           unread and drop-dead-loop-values stops carrying it (one op and one carried tensor
           less per step).
Proof:     after the last step acc holds RESHAPE(h') and s holds h' of that same step, so
           acc[-1] (shrunk to [B, u]) is s element for element; with trip count >= 1 there is
           a last step.
Invariant: model outputs are bit-identical, under the same names.
"""

from __future__ import annotations

from tflgraph.ir import Model
from tflgraph.pipeline import Pass, register
from tflgraph.rnn import loops


@register("last-step-from-state")
class LastStepFromState(Pass):
    """Replace acc[-1] of a one-row loop accumulator by the loop's final state."""

    def run(self, model: Model) -> bool:
        moved = 0
        for loop in loops.rnn_loops(model, self.explain):
            if loop.acc_kind == "last" and loop.trip_count >= 1:
                moved += self._move(loop)
        self.stats = {"readers_moved": moved}
        return bool(moved)

    def _move(self, loop: loops.RnnLoop) -> int:
        sg, acc = loop.sg, loop.acc
        state = next((s for s in loop.states if s.next is loop.acc_value), None)
        if state is None:
            self.explain(f"{loop.name}: the accumulated value is not a state")
            return 0
        if state.result.is_variable:  # a fused op after the loop updates it in place
            self.explain(f"{loop.name}: the final state is a fused op's in-place state")
            return 0
        readers = sg.consumers(acc.result)
        if not readers or any(t is acc.result or t is state.result for t in sg.outputs):
            return 0  # (a final state that is a model output too would be listed twice)
        if not all(
            loops.is_last_step_slice(p, 1) and p.outputs[0].shape == state.result.shape
            for p in readers
        ):
            self.explain(f"{loop.name}: the accumulator is read other than as acc[-1]")
            return 0
        for p in readers:
            loops.replace_result(sg, p.outputs[0], state.result)
        return len(readers)
