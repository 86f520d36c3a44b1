"""Make a recurrent loop's condition one comparison with its constant trip count.

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops.analyze_loop) whose cond is a tree of
           LOGICAL_AND over LESS(counter, constant) (Keras 3: two counters, two LESS and a
           LOGICAL_AND), or whose single LESS compares against a bound other than
           start(time) + T.
Rewrite:   cond = LESS(time, start(time) + T), with T the trip count computed statically.
Proof:     every counter starts at a constant and steps by 1 in lockstep with time, so
           LESS(c, b_c) <=> k < b_c - start(c) after k steps; the conjunction is
           k < min_c(b_c - start(c)) = T <=> time < start(time) + T (analyze_loop's trip count).
Invariant: model outputs are bit-identical; TFLM evaluates one op per condition check.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Model
from tflgraph.pipeline import Pass, register
from tflgraph.rnn import loops


@register("constant-trip-count")
class ConstantTripCount(Pass):
    """Rewrite a loop condition to LESS(time, constant)."""

    def run(self, model: Model) -> bool:
        rewritten = 0
        for loop in loops.rnn_loops(model, self.explain):
            rewritten += self._rewrite(loop)
        self.stats = {"conditions_rewritten": rewritten}
        return bool(rewritten)

    def _rewrite(self, loop: loops.RnnLoop) -> bool:
        cond = loop.cond
        t_arg = cond.inputs[loop.time.index]
        bound = int(loops.scalar_value(loop.time.init)) + loop.trip_count
        out = cond.outputs[0]
        p = cond.producer(out)
        if (
            p is not None
            and p.type == "LESS"
            and p.inputs[0] is t_arg
            and loops.scalar_value(p.inputs[1]) == bound
            and len(cond.operators) == 1
        ):
            return False  # already LESS(time, T)
        limit = cond.new_constant(np.array(bound, np.int32), f"{cond.name}/trip_count")
        new = cond.new_tensor(out.name + "/less", (), "bool")
        cond.add_op("LESS", [t_arg, limit], [new])
        cond.outputs = [new]
        return True
