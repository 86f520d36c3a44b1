"""Where an unrolled RNN reads its steps from, and where it writes its per-step outputs to.

Converters cut a sequence x into its T steps along its time axis a in one of these ways:

    x_0..x_{T-1} = UNPACK(x, axis=a)                         # Keras, tf_keras, TF 2.15
    x_0..x_{T-1} = SPLIT(a, x, num_splits=T)                 # x_t keeps a size-1 axis a
    x_t = STRIDED_SLICE(x, t along a) or GATHER(x, t, axis=a), one op per step t

`sequence_steps(sg)` finds them all as `Steps`. The per-step outputs y_t come back together as

    PACK(y_0..y_{T-1}, axis=a)   or   CONCATENATION(y_0..y_{T-1}, axis=a), y_t of size 1 on a

(`step_outputs`). Either way x_t = x[t] along a, and the output is the PACK of the y_t along
a, give or take a size-1 axis: the loop that replaces the chain (tflgraph.rnn.reroll_loop)
reads GATHER(time-major x, t) and writes its rows into a time-major accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.rnn.loops import const_value, scalar_value


@dataclass(eq=False)
class Steps:
    """x_t = source[t] along `axis` for t < T, read by `ops` (one UNPACK or SPLIT, or one
    STRIDED_SLICE or GATHER per step)."""

    source: Tensor
    axis: int
    xs: list[Tensor]
    ops: list[Operator]

    @property
    def name(self) -> str:
        """How --explain names the steps: 'UNPACK x' or 'STRIDED_SLICE x'."""
        return f"{self.ops[0].type} {self.source.name!r}"


def sequence_steps(sg: Subgraph) -> list[Steps]:
    """Every way `sg` reads T >= 3 steps of one tensor (see the module docstring)."""
    found, per_step = [], {}
    for op in sg.operators:
        if op.type == "UNPACK":
            x, axis = op.inputs[0], op.option("axis", 0)
            found.append(_steps(x, axis, list(op.outputs), [op]))
        elif op.type == "SPLIT":
            axis, x = scalar_value(op.inputs[0]), op.inputs[1]
            found.append(_steps(x, axis, list(op.outputs), [op]) if axis is not None else None)
        elif op.type in ("STRIDED_SLICE", "GATHER"):
            at = _step_index(op)
            if at is not None:
                per_step.setdefault((op.inputs[0], op.type, at[0]), {})[at[1]] = op
    for (x, _, axis), by_t in per_step.items():
        if sorted(by_t) == list(range(x.shape[axis])):
            ops = [by_t[t] for t in sorted(by_t)]
            found.append(_steps(x, axis, [p.outputs[0] for p in ops], ops))
    return [s for s in found if s is not None]


def _steps(x: Tensor, axis: int, xs: list[Tensor], ops: list[Operator]) -> Steps | None:
    rank = len(x.shape)
    if not rank or not -rank <= axis < rank:
        return None
    axis %= rank
    if len(xs) < 3 or x.shape[axis] != len(xs):
        return None
    step = tuple(d for k, d in enumerate(x.shape) if k != axis)
    if any(t is None or tuple(d for d in t.shape if d != 1) != _unit(step) for t in xs):
        return None
    return Steps(x, axis, xs, ops)


def _unit(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def _step_index(op: Operator) -> tuple[int, int] | None:
    """(axis, t) if `op` reads x[t] along one axis, constant t, every other axis whole."""
    x = op.inputs[0]
    rank = len(x.shape)
    if op.type == "GATHER":
        t, axis = scalar_value(op.inputs[1]), op.option("axis", 0)
        if t is None or op.inputs[1].shape != () or op.option("batch_dims", 0) or not rank:
            return None
        axis %= rank
        return (axis, int(t) % x.shape[axis]) if -x.shape[axis] <= t < x.shape[axis] else None
    begin, end, strides = (const_value(t) for t in op.inputs[1:4])
    if begin is None or end is None or strides is None or np.any(strides != 1) or not rank:
        return None
    if op.option("ellipsis_mask", 0) or op.option("new_axis_mask", 0) or op.option("offset"):
        return None
    bmask, emask, shrink = (op.option(k, 0) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    cut = []
    for k in range(rank):
        lo = 0 if bmask >> k & 1 else int(begin[k]) % x.shape[k]
        hi = lo + 1 if shrink >> k & 1 else x.shape[k] if emask >> k & 1 else int(end[k])
        hi = hi + x.shape[k] if hi < 0 else min(hi, x.shape[k])
        if (lo, hi) != (0, x.shape[k]):
            cut.append((k, lo, hi))
    if len(cut) != 1 or cut[0][2] - cut[0][1] != 1:
        return None
    return cut[0][0], cut[0][1]


def step_outputs(op: Operator, steps: int) -> int | None:
    """The time axis a if `op` gathers `steps` per-step outputs: PACK(axis a), or
    CONCATENATION(axis a) of values of size 1 on a; else None."""
    if len(op.inputs) != steps or op.activation != "NONE":
        return None
    rank = len(op.outputs[0].shape)
    axis = op.option("axis", 0) % max(rank, 1)
    if op.type == "PACK":
        return axis
    if op.type == "CONCATENATION" and all(t.shape[axis] == 1 for t in op.inputs):
        return axis
    return None
