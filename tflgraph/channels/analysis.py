"""Build the channel dependency graph of a model (see tflgraph/channels/graph.py).

Every op is visited once through the per-op table (tflgraph/channels/ops.py): it ties its
slots and returns the function computing its output values, or it blocks its tensors. Then the
values are propagated through the top-level subgraphs in execution order.
"""

from __future__ import annotations

from tflgraph.channels.graph import ChannelGraph
from tflgraph.channels.loops import loop_subgraphs
from tflgraph.channels.ops import visit
from tflgraph.ir import Model


def analyze(model: Model) -> ChannelGraph:
    """The channel graph of `model`: `.removal()` then says which channels can go."""
    inner = loop_subgraphs(model)
    g = ChannelGraph(inner, [sg for sg in model.subgraphs if sg not in inner])
    entries = {model.main} | {s.subgraph for s in model.signature_defs}
    for sg in g.top:  # their shapes are the interface (a model's, or a caller's)
        kind = "a model" if sg in entries else "a subgraph"
        g.block(sg.outputs, f"{kind} output")
        g.block(sg.inputs, f"{kind} input")
    for sg in model.subgraphs:
        for op in sg.operators:
            fn = visit(g, sg, op)
            if fn is None:
                g.block(op.inputs + op.outputs, f"{op.type} (not channel-wise here)")
            else:
                g.fns[op] = fn
    for sg in g.top:
        g.run_values(sg)
    return g
