"""Build the WHILE loop that replaces an unrolled chain (tflgraph.rnn.reroll_find.Unrolled).

    (t, *states, [acc], seq, *invariants) = WHILE(0, *zeros, [FILL([T, B, u], 0)], seq, ...)
                                          # seq = REVERSE_V2(seq, [0]) for a backward chain
    cond:  LESS(t, T)
    body:  x_t = GATHER(seq, t); one copy of the cell (Unrolled.body_ops); t' = ADD(t, 1);
           acc' = DYNAMIC_UPDATE_SLICE(acc, RESHAPE(y, [1, B, u]), PACK(t, 0, 0))

This is the form tflgraph.rnn.loops.analyze_loop reads (one counter, GATHER of the time-major
sequence, states, the static accumulator of static-loop-outputs), so fuse-lstm and
fuse-simple-rnn fuse it and TFLM runs what stays a loop. The states start from zeros: the
converter's first step is the cell with a zero state folded in, which the reroll pass proves.

int8 chains take their parameters from a `Requantized` (tflgraph.rnn.reroll_requant): the
body's values, the states on both sides of the body and the WHILE operands get its one set per
value, the zero states are the zero point, and a value the chain hands on under other
parameters than the loop's goes through a QUANTIZE to the chain's.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflgraph.io.schema import new_options
from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.rnn.reroll_find import Unrolled
from tflgraph.rnn.reroll_requant import Requantized


def build_loop(
    u: Unrolled, name: str, rq: Requantized | None = None
) -> tuple[Operator, dict[Tensor, Tensor]]:
    """Add the WHILE op for `u` to its subgraph (nothing reads it yet). Returns it and what
    each value the chain hands on becomes: {old tensor: loop result}. `rq`: the parameters of
    an int8 chain whose steps have their own (see the module docstring)."""
    sg, model = u.sg, u.sg.model
    rq = rq or Requantized()
    cond, body = (
        model.add_subgraph(model.unique_name(f"{name}/while_{k}")) for k in ("cond", "body")
    )
    zero = sg.new_constant(np.array(0, np.int32), f"{name}/t0")
    inits = [zero] + [_zero_state(sg, s, rq.of(s), f"{name}/s0") for s in u.states]
    if u.pack is not None:
        inits.append(_zeros(sg, (u.steps, *_row_shape(u)), u.y, rq.of(u.y), name))
    inits += [_sequence(sg, u, name), *u.invariants]
    for g in (cond, body):
        g.inputs = [_like(g, t, f"{g.name}/arg{i}") for i, t in enumerate(inits)]
    limit = cond.new_constant(np.array(u.steps, np.int32), f"{cond.name}/T")
    done = cond.new_tensor(f"{cond.name}/less", (), "bool")
    cond.add_op("LESS", [cond.inputs[0], limit], [done])
    cond.outputs = [done]
    body.outputs = _body(u, body, rq)
    results = [_like(sg, t, f"{name}/while{i}") for i, t in enumerate(inits)]
    options = new_options("WhileOptions", cond_subgraph_index=cond, body_subgraph_index=body)
    op = sg.add_op("WHILE", inits, results, options)
    moved = {t: _as(sg, results[1 + j], t, name) for t, j in u.exits}
    if u.pack is not None:
        acc = _as(sg, results[1 + len(u.states)], u.pack.outputs[0], name)
        moved[u.pack.outputs[0]] = _arranged(sg, acc, u, name)
    return op, moved


def _zero_state(sg: Subgraph, s: Tensor, params: dict | None, name: str) -> Tensor:
    """A constant zero like `s` under `params`: the zero point where quantized."""
    params = params if s.is_quantized else None
    zero = params["zero_point"][0] if params else 0
    out = sg.new_constant(np.full(s.shape, zero, s.dtype), name, quantization=params)
    out.type = s.type
    return out


def _as(sg: Subgraph, t: Tensor, like: Tensor, name: str) -> Tensor:
    """`t` under `like`'s quantization parameters: itself, or QUANTIZE(t) when they differ."""
    if not like.is_quantized or _same(t.quantization, like.quantization):
        return t
    out = sg.new_tensor(f"{name}/requantized", t.shape, t.dtype, quantization=like.quantization)
    out.type = like.type
    sg.add_op("QUANTIZE", [t], [out])
    return out


def _same(a: dict | None, b: dict | None) -> bool:
    keys = ("scale", "zero_point")
    return all(np.array_equal((a or {}).get(k, ()), (b or {}).get(k, ())) for k in keys)


def _row_shape(u: Unrolled) -> tuple[int, ...]:
    """One row of the accumulator: y_t without the size-1 axis a CONCATENATION joins on."""
    shape = list(u.y.shape)
    if u.pack.type == "CONCATENATION":
        del shape[u.out_axis]
    return tuple(shape)


def _arranged(sg: Subgraph, acc: Tensor, u: Unrolled, name: str) -> Tensor:
    """The time-major accumulator [T, *row] as the PACK/CONCATENATION output it replaces: the
    time axis moved to `out_axis` (TRANSPOSE), which is already that output's shape."""
    if u.out_axis == 0:
        return acc
    rank = len(acc.shape)
    perm = [*range(1, u.out_axis + 1), 0, *range(u.out_axis + 1, rank)]
    out = _like(sg, u.pack.outputs[0], f"{name}/sequence")
    perm_t = sg.new_constant(np.array(perm, np.int32), f"{name}/perm")
    sg.add_op("TRANSPOSE", [acc, perm_t], [out])
    return out


def _body(u: Unrolled, body: Subgraph, rq: Requantized) -> list[Tensor]:
    """Fill `body` with one step; returns its outputs (operand order of the inputs)."""
    args = list(body.inputs)
    t = args[0]
    states = args[1 : 1 + len(u.states)]
    acc = args[1 + len(u.states)] if u.pack is not None else None
    seq, invariants = args[-1 - len(u.invariants)], args[len(args) - len(u.invariants) :]
    one = body.new_constant(np.array(1, np.int32), f"{body.name}/one")
    t_next = body.new_tensor(f"{body.name}/t_next", (), "int32")
    body.add_op("ADD", [t, one], [t_next])
    x = body.new_tensor(f"{body.name}/x_t", seq.shape[1:], seq.dtype)
    x.type, x.quantization = seq.type, seq.quantization if seq.is_quantized else None
    body.add_op("GATHER", [seq, t], [x], {"axis": 0})
    if x.shape != u.x.shape:  # x_t keeps a size-1 axis (SPLIT, STRIDED_SLICE)
        x = _reshaped(body, x, u.x.shape, f"{body.name}/x_t_shaped")
    mapped: dict[Tensor, Tensor] = {u.x: x, **dict(zip(u.states, states))}
    mapped.update(zip(u.invariants, invariants))
    for op in u.body_ops:
        ins = [
            None if i is None else _bias(body, rq.biases[(op, k)], i) if (op, k) in rq.biases
            else _inside(body, i, mapped)
            for k, i in enumerate(op.inputs)
        ]  # fmt: skip
        outs = [None if o is None else _like(body, o, o.name, rq.of(o)) for o in op.outputs]
        mapped.update((o, n) for o, n in zip(op.outputs, outs) if o is not None)
        body.add_op(
            dataclasses.replace(
                op, inputs=ins, outputs=outs, options=copy.copy(op.options), intermediates=[]
            )
        )
    nexts = [mapped[n] for n in u.nexts]
    acc_next = []
    if acc is not None:
        y = mapped[u.y]
        if y.shape != acc.shape[1:]:  # CONCATENATION: without its size-1 axis
            y = _reshaped(body, y, acc.shape[1:], f"{body.name}/y")
        acc_next.append(_write_row(body, acc, y, t))
    return [t_next, *nexts, *acc_next, seq, *invariants]


def _bias(body: Subgraph, new: tuple[np.ndarray, dict], old: Tensor) -> Tensor:
    """A requantized int32 bias (Requantized.biases) in the body."""
    t = body.new_constant(new[0], old.name, quantization=new[1])
    t.type = old.type
    return t


def _inside(body: Subgraph, t: Tensor, mapped: dict) -> Tensor:
    """The body tensor for chain tensor `t`: already mapped, or a copy of a constant."""
    if t not in mapped:
        mapped[t] = body.new_constant(np.array(t.data), t.name, quantization=t.quantization)
        mapped[t].type = t.type
    return mapped[t]


def _write_row(body: Subgraph, acc: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """acc' = DYNAMIC_UPDATE_SLICE(acc, RESHAPE(y, [1, *y.shape]), PACK(t, 0, ...))."""
    rank = len(acc.shape)
    row = _reshaped(body, y, (1, *acc.shape[1:]), f"{body.name}/row")
    zero = body.new_constant(np.zeros((), np.int32), f"{body.name}/zero")
    index = body.new_tensor(f"{body.name}/index", (rank,), "int32")
    body.add_op("PACK", [t] + [zero] * (rank - 1), [index], {"values_count": rank, "axis": 0})
    new = _like(body, acc, f"{body.name}/acc_next")
    body.add_op("DYNAMIC_UPDATE_SLICE", [acc, row, index], [new])
    return new


def _reshaped(g: Subgraph, t: Tensor, shape: tuple, name: str) -> Tensor:
    out = g.new_tensor(name, shape, t.dtype, quantization=t.quantization)
    new_shape = g.new_constant(np.array(shape, np.int32), f"{name}/shape")
    g.add_op("RESHAPE", [t, new_shape], [out], {"new_shape": list(shape)})
    return out


def _sequence(sg: Subgraph, u: Unrolled, name: str) -> Tensor:
    """The sequence time-major, in the order the steps read it: TRANSPOSE when time is not
    axis 0, REVERSE_V2 along time for a backward chain (the form of a go_backwards loop,
    which fuse-lstm knows)."""
    seq, axis = u.source.source, u.source.axis
    if axis:
        perm = [axis, *(k for k in range(len(seq.shape)) if k != axis)]
        out = sg.new_tensor(f"{name}/time_major", [seq.shape[k] for k in perm], seq.dtype)
        out.type, out.quantization = seq.type, seq.quantization
        perm_t = sg.new_constant(np.array(perm, np.int32), f"{name}/time_first")
        sg.add_op("TRANSPOSE", [seq, perm_t], [out])
        seq = out
    if not u.backwards:
        return seq
    time = sg.new_constant(np.array([0], np.int32), f"{name}/time_axis")
    out = _like(sg, seq, f"{name}/reversed")
    sg.add_op("REVERSE_V2", [seq, time], [out])
    return out


def _zeros(sg: Subgraph, shape: tuple, like: Tensor, params: dict | None, name: str) -> Tensor:
    """FILL(shape, 0) of `like`'s type (its zero point under `params` where quantized): a
    zero accumulator of a few bytes in the file."""
    dims = sg.new_constant(np.array(shape, np.int32), f"{name}/acc_shape")
    params = params if like.is_quantized else None
    zero = params["zero_point"][0] if params else 0
    value = sg.new_constant(np.array(zero, like.dtype), f"{name}/acc_zero", quantization=params)
    value.type = like.type
    out = sg.new_tensor(f"{name}/acc0", shape, like.dtype, quantization=params)
    out.type = like.type
    sg.add_op("FILL", [dims, value], [out])
    return out


def _like(sg: Subgraph, t: Tensor, name: str, params: dict | None = None) -> Tensor:
    """A fresh tensor of `sg` with t's type, static shape and quantization (or `params`)."""
    new = sg.new_tensor(name, t.shape, t.dtype, quantization=params or t.quantization)
    new.type = t.type
    return new
