"""WHILE loops in the channel analysis (tflgraph/channels/graph.py).

A WHILE op's operand i is one value seen through five tensors: the initial value fed by the
caller, the cond argument, the body argument, the body result and the loop result. They must
keep one shape, so their channels are tied slot for slot; inside the body the ordinary ops then
tie a recurrent state's unit to everything the step computes for it (an LSTM cell's four gate
rows, recurrent columns, bias entries, c and h). A constant initial value (the converter's
zero states and accumulator) is sliced with its class.

Values: the body's arguments start with the initial values; the body is evaluated (on the
per-channel constants) until its results agree with its arguments channel by channel, channels
that disagree becoming unknown. At that fixed point the known values hold at every iteration
(by induction over the iterations), and so for the loop results.

Only loops whose cond and body are used by that WHILE alone and are not top-level subgraphs
(main, signature entry points) are tied; the subgraphs of any other loop keep their inputs and
outputs blocked.
"""

from __future__ import annotations

import numpy as np

from tflgraph.channels.graph import ChannelGraph, ValueFn
from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.rnn.loops import subgraph_users

MAX_FIXED_POINT_ROUNDS = 64


def loop_subgraphs(model: Model) -> set[Subgraph]:
    """The cond and body subgraphs of the WHILE loops the analysis ties through."""
    inner = set()
    for sg in model.subgraphs:
        for op in sg.ops_of_type("WHILE"):
            parts = _parts(model, op)
            if parts is not None:
                inner.update(parts)
    return inner


def _parts(model: Model, op: Operator) -> tuple[Subgraph, Subgraph] | None:
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    if not isinstance(cond, Subgraph) or not isinstance(body, Subgraph) or cond is body:
        return None
    top = {model.subgraphs[0]} | {s.subgraph for s in model.signature_defs}
    if cond in top or body in top:
        return None
    if subgraph_users(model, cond) != 1 or subgraph_users(model, body) != 1:
        return None
    n = len(op.inputs)
    if not (len(op.outputs) == len(body.inputs) == len(body.outputs) == len(cond.inputs) == n):
        return None
    for i in range(n):
        ts = (op.inputs[i], cond.inputs[i], body.inputs[i], body.outputs[i], op.outputs[i])
        if any(t is None for t in ts) or len({tuple(t.shape) for t in ts}) != 1:
            return None
    return cond, body


def visit_while(g: ChannelGraph, sg: Subgraph, op: Operator) -> ValueFn | None:
    """Tie the loop's operands; return the function computing the loop results' values."""
    parts = _parts(sg.model, op) if sg.model is not None else None
    if parts is None or parts[1] not in g.inner:
        return None
    cond, body = parts
    carried = []
    for i, init in enumerate(op.inputs):
        if not init.shape:  # counters and other scalars have no channel axis
            continue
        views = [cond.inputs[i], body.inputs[i], body.outputs[i], op.outputs[i]]
        base = g.const_slots(init) if init.is_constant else g.slots(init)
        bases = [g.slots(t) for t in views]
        if base is None or any(b is None for b in bases):
            g.block([init, *views], "a loop operand without a static channel axis")
            continue
        if init.is_constant:
            g.constants.append((sg, op, i))
        for b in bases:
            g.union(base, b, init.shape[-1])
        carried.append((init, body.inputs[i], body.outputs[i], op.outputs[i]))

    def fn():
        for init, arg, _, _ in carried:
            g.values[arg] = g.value(init)
        for _ in range(MAX_FIXED_POINT_ROUNDS):
            g.run_values(body)
            moved = False
            for _, arg, nxt, _ in carried:
                a = g.value(arg)
                agreed = np.where(a == g.value(nxt), a, np.nan)
                if not np.array_equal(agreed, a, equal_nan=True):
                    g.values[arg], moved = agreed, True
            if not moved:
                break
        else:  # no fixed point: nothing is known about the carried values
            for _, arg, _, _ in carried:
                g.values[arg] = np.full(arg.shape[-1], np.nan)
            g.run_values(body)
        for _, arg, _, result in carried:
            g.values[result] = g.value(arg)

    return fn
