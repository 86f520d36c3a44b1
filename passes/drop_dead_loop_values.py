"""Stop carrying WHILE operands whose value nobody reads.

Pattern:   a WHILE op whose cond and body are used by it alone, and a set D of operand
           indices such that, for every i in D, the loop result i is unused by the caller,
           cond never reads its argument i, and no body output outside D (nor any op with
           side effects) depends on body argument i.
Rewrite:   a WHILE without the operands in D (tflgraph.rnn.loops.rebuild_while); the body ops
           that computed them become dead and the driver removes them.
Proof:     every value the loop still produces (results outside D, the cond decision) is
           computed only from operands outside D, whose initial values and step functions are
           unchanged, so by induction over the iterations they are the same values.
Invariant: model outputs are bit-identical; each iteration copies fewer tensors in TFLM.
"""

from __future__ import annotations

import networkx as nx

from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import Pass, has_side_effects, register
from tflgraph.rnn import loops


@register("drop-dead-loop-values")
class DropDeadLoopValues(Pass):
    """Remove loop-carried values that neither the caller, the condition nor the body reads."""

    def run(self, model: Model) -> bool:
        dropped = 0
        for sg in model.subgraphs:
            for op in loops.while_loops(sg):
                dead = dead_operands(model, sg, op)
                if dead and len(dead) < len(op.inputs):
                    loops.rebuild_while(sg, op, drop=dead)
                    dropped += len(dead)
        self.stats = {"operands_dropped": dropped}
        return bool(dropped)


def dead_operands(model: Model, sg: Subgraph, op: Operator) -> list[int]:
    """Indices of the operands of WHILE `op` that can be dropped together (see docstring)."""
    cond = op.option("cond_subgraph_index")
    body = op.option("body_subgraph_index")
    if not isinstance(cond, Subgraph) or not isinstance(body, Subgraph) or cond is body:
        return []
    if loops.subgraph_users(model, cond) != 1 or loops.subgraph_users(model, body) != 1:
        return []
    n = len(op.inputs)
    if not len(op.outputs) == len(cond.inputs) == len(body.inputs) == len(body.outputs) == n:
        return []
    dead = {
        i
        for i in range(n)
        if op.outputs[i] is not None
        and not sg.is_used(op.outputs[i])
        and not cond.is_used(cond.inputs[i])
    }
    effects = [o for o in body.operators if has_side_effects(o)]
    while dead:
        roots = [body.outputs[j] for j in range(n) if j not in dead]
        roots += [t for o in effects for t in o.inputs if t is not None]
        needed = set(roots)
        for t in roots:
            needed |= nx.ancestors(body.graph, t)
        alive = {i for i in dead if body.inputs[i] in needed}
        if not alive:
            break
        dead -= alive
    return sorted(dead)
