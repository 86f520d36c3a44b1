"""WHILE loops with integer bodies.

TFLM's WHILE copies raw bytes between the op and its subgraphs, and nothing checks that they
mean the same (INT8_NOTES.md): a loop-carried value must have one set of parameters on the
WHILE's input and output, on the cond's and body's input and on the body's output. It gets the
union of the ranges calibration saw on all of them (over every step). A WHILE input with other
parameters is requantized before the loop; in the body, an op that rescales anyway (FULLY_
CONNECTED, ADD, MUL, ...) writes the carried parameters directly, a TANH or LOGISTIC output
gives the loop value its fixed parameters, and any other body output is requantized by a
QUANTIZE at the end of the body. Integer counters stay int32.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph
from tflgraph.quant import params
from tflgraph.quant.calibration import QuantizeError, Ranges


def plan(
    sg: Subgraph,
    op: Operator,
    ranges: Ranges,
    plans: dict,
    plan_subgraph,
    fixed: dict,
    wide: bool = False,
) -> None:
    """Parameters of the loop-carried values of `op`, then of its cond and body subgraphs
    (`plan_subgraph(subgraph, preset)`: the caller's planner; `preset`: the parameters that
    rescaling ops must write; `fixed`: op type -> the (scale, zero point) its output has).
    `wide`: int16 bodies, whose loop values are int16 too, except an input sequence the body
    only reads with GATHER (TFLM's GATHER has no int16)."""
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    carried = {}
    for i, t in enumerate(op.inputs):
        if t is None or t.dtype is None or t.dtype.kind != "f":
            continue
        seen = [r for x in _ends(op, cond, body, i) if (r := ranges.of(x)) is not None]
        if not seen:
            raise QuantizeError(f"loop value {i} of {op.outputs[i].name!r} was never computed")
        lo, hi = min(r[0] for r in seen), max(r[1] for r in seen)
        if wide and not _gathered(body, i):
            q = (np.int16, params.symmetric16(lo, hi))
        else:
            q = _fixed(body, body.outputs[i], lo, hi, fixed) or (np.int8, params.activation(lo, hi))
        carried[i] = q
        if not t.is_constant:
            _enter(sg, op, i, q, plans)
        for x in (op.outputs[i], body.inputs[i], cond.inputs[i]):
            plans[x] = q
    plan_subgraph(cond, {})
    plan_subgraph(body, {body.outputs[i]: q for i, q in carried.items()})
    for i, q in carried.items():
        out = body.outputs[i]
        if not params.same_plan(plans[out], q):
            moved = body.new_tensor(f"{out.name}_carried", out.shape, "float32")
            body.add_op("QUANTIZE", [out], [moved])
            body.outputs[i] = moved
            plans[moved] = q


def _fixed(body: Subgraph, out, lo: float, hi: float, fixed: dict) -> tuple | None:
    """The fixed parameters of the op computing a body output (a SimpleRNN's TANH), when they
    cover the loop value's range: then the body needs no requantization at its end."""
    op = body.producer(out)
    if op is None or op.type not in fixed:
        return None
    scale, zp = fixed[op.type]
    if lo < (-128 - zp) * scale or hi > (127 - zp) * scale + scale:
        return None
    return np.int8, params.qparams(scale, zp)


def _gathered(body: Subgraph, i: int) -> bool:
    """Loop value i is a sequence the body reads with GATHER only (x[t])."""
    readers = body.consumers(body.inputs[i])
    return bool(readers) and all(r.type == "GATHER" for r in readers)


def _ends(op: Operator, cond: Subgraph, body: Subgraph, i: int) -> list:
    """Every tensor that holds loop value i: the op's input and output, the subgraphs' inputs,
    the body's output."""
    return [op.inputs[i], op.outputs[i], cond.inputs[i], body.inputs[i], body.outputs[i]]


def _enter(sg: Subgraph, op: Operator, i: int, q: tuple, plans: dict) -> None:
    """WHILE input i carries `q`: its own if it has none yet, else through a requantization."""
    t = op.inputs[i]
    if t not in plans:
        plans[t] = q
        return
    if params.same_plan(plans[t], q):
        return
    moved = sg.new_tensor(f"{t.name}_carried", t.shape, "float32")
    sg.add_op("QUANTIZE", [t], [moved])
    sg.set_input(op, i, moved)
    plans[moved] = q


def emit(op: Operator, plans: dict, constant) -> None:
    """A constant initial value (a zero state) is quantized with its loop value's parameters."""
    for i, t in enumerate(op.inputs):
        if t is not None and t.is_constant and t.dtype is not None and t.dtype.kind == "f":
            dtype, q = plans[op.outputs[i]]
            constant(op, i, params.quantize(t.data, q, dtype), q)
