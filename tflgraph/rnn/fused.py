"""Facts about a fused UNIDIRECTIONAL_SEQUENCE_LSTM already in a graph, for the passes that
reshape it for memory (chunk-sequence-lstm, lstm-output-from-state): its time axis and the
readers that take only its last step; and the states a converter left stateful."""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor

# operand indices of UNIDIRECTIONAL_SEQUENCE_LSTM (TFLITE_NOTES.md)
PROJECTION, H_STATE, C_STATE = 16, 18, 19


def time_axis(lstm: Operator) -> int:
    """0 for a time-major op ([T, B, F]), else 1."""
    return 0 if lstm.option("time_major", False) else 1


def is_last_step(p: Operator, y: Tensor, axis: int) -> bool:
    """p = STRIDED_SLICE(y) taking y's last step along `axis` (begin -1 or T-1), that axis
    shrunk, every other axis whole (what fuse-lstm writes after the fused op)."""
    if p.type != "STRIDED_SLICE" or len(p.inputs) != 4 or p.inputs[0] is not y:
        return False
    begin, end, strides = (t.data if t is not None else None for t in p.inputs[1:])
    if begin is None or end is None or strides is None or np.any(strides != 1):
        return False
    o = p.options if isinstance(p.options, dict) else {}
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0) or o.get("offset", False):
        return False
    if int(o.get("shrink_axis_mask", 0)) != 1 << axis:
        return False
    if int(begin[axis]) not in (-1, y.shape[axis] - 1):
        return False
    bmask, emask = int(o.get("begin_mask", 0)), int(o.get("end_mask", 0))
    for k in range(len(y.shape)):
        if k != axis and not (
            ((bmask >> k) & 1 or int(begin[k]) == 0)
            and ((emask >> k) & 1 or int(end[k]) >= y.shape[k])
        ):
            return False
    return tuple(p.outputs[0].shape) == tuple(d for k, d in enumerate(y.shape) if k != axis)


def kept_across_invokes(sg: Subgraph, op: Operator, state: Tensor | None) -> bool:
    """`state` is an operand of `op` that keeps its value from one invoke to the next: a
    variable tensor that no op writes but `op` (in place), that no model input feeds and
    that no other op reads (zero at allocation, then the last invoke's final state)."""
    return (
        state is not None
        and state.is_variable
        and sg.producer(state) is None
        and state not in sg.inputs
        and all(p is op for p in sg.consumers(state))
    )


def zeroed_every_invoke(sg: Subgraph, state: Tensor) -> Tensor:
    """A new variable tensor of `state`'s shape that a FILL sets to zeros at the start of every
    invoke: given to a recurrent op in place of `state`, the op starts from zeros each time."""
    var = sg.new_tensor(f"{state.name}/reset", state.shape, is_variable=True)
    shape = sg.new_constant(np.array(state.shape, np.int32), f"{state.name}/shape")
    sg.add_op("FILL", [shape, sg.new_constant(np.float32(0), f"{state.name}/zero")], [var])
    return var
