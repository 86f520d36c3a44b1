"""A model of TFLM's memory planner, for passes that choose a form or an order by its peak.

TFLM plans one arena region for the tensors that ops compute (and the subgraph's inputs): a
tensor occupies its bytes from the op that writes it (an input: from the start) to the last
op that reads it (a subgraph output: to the end); constants stay in flash and variable
tensors in a persistent region. At every op the live tensors (plus the op's scratch) must fit
side by side, so the largest sum of live bytes over the ops is what the planner cannot go
below; TFLM's greedy planner reaches it on the chains and branches measured here (e.g. the
fused LSTM of k3_lstm_big: input 8,000 + sequence 25,600 + gate scratch 2,048 = 35,648
bytes, the planned head TFLM reports). This module only predicts: the figure that counts is
TFLM's own (tflgraph.runtime.arena), which the tests and `optimize` measure.
"""

from __future__ import annotations

from tflgraph.ir import Operator, Subgraph, Tensor


def planned(t: Tensor) -> bool:
    """Whether TFLM's planner places this tensor in the arena's planned region."""
    return not t.is_constant and not t.is_variable and t.dtype is not None


def nbytes(t: Tensor) -> int:
    n = t.dtype.itemsize if t.dtype is not None else 0
    for d in t.shape:
        n *= max(int(d), 1)
    return n


def scratch_bytes(op: Operator) -> int:
    """The scratch an op's TFLM kernel asks for while it runs, where known: the fused LSTM's
    four gate buffers [B, u] in float32."""
    if op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM" and op.outputs[0] is not None:
        out = op.outputs[0]
        time_major = bool(op.option("time_major", False))
        batch = out.shape[1] if time_major else out.shape[0]
        return 4 * 4 * int(batch) * int(out.shape[2])
    return 0


def live_bytes(sg: Subgraph, order: list[Operator] | None = None) -> list[int]:
    """For each op of `order` (default: the execution order), the bytes of planned tensors
    alive while it runs, plus its scratch."""
    order = sg.operators if order is None else order
    end = len(order)
    spans: dict[Tensor, list[int]] = {}
    for t in sg.inputs:
        if t is not None and planned(t):
            spans[t] = [0, 0]
    for i, op in enumerate(order):
        for t in op.outputs:
            if t is not None and planned(t):
                spans.setdefault(t, [i, i])
        for t in op.inputs:
            if t is not None and t in spans:
                spans[t][1] = max(spans[t][1], i)
    for t in sg.outputs:
        if t in spans:
            spans[t][1] = end
    delta = [0] * (end + 2)
    for t, (first, last) in spans.items():
        delta[first] += nbytes(t)
        delta[min(last, end) + 1] -= nbytes(t)
    out, running = [], 0
    for i, op in enumerate(order):
        running += delta[i]
        out.append(running + scratch_bytes(op))
    return out


def peak(sg: Subgraph, order: list[Operator] | None = None) -> int:
    """The planner's lower bound for this order: the largest live_bytes."""
    return max(live_bytes(sg, order), default=0)
