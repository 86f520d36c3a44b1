"""What a Keras/TF recurrent WHILE loop looks like, shared by the RNN passes.

The converter turns every Keras 3 RNN layer (and tf_keras RNN(cell), GRU, SimpleRNN) into

    seq_tm = RESHAPE|TRANSPOSE(x)                       # [B, T, F] -> time-major [T, B, F]
    (n, t, acc, *states, seq_tm) = WHILE(0, 0, acc0, *state0, seq_tm)
    y = STRIDED_SLICE(acc)[-1]   or   RESHAPE|TRANSPOSE(acc) -> [B, T, u]

cond:  LESS(t, T) (tf_keras), or LOGICAL_AND(LESS(n, T), LESS(t, T)) (Keras 3)
body:  t' = ADD(t, 1) for every counter; x_t = GATHER(seq, t); one cell step computes the new
       states from x_t and the old states; the accumulator either keeps only the last step,
       acc' = RESHAPE(h', [1, B, u]), or writes step t with the dynamic-shape idiom
       acc' = CONCATENATION(SLICE(acc, 0, [t, -1, -1]), RESHAPE(h', [1, B, u]),
                            SLICE(acc, [t + 1, 0, 0], [-1, -1, -1])).

`analyze_loop(sg, while_op)` recognises that frame and returns an `RnnLoop` naming every
operand's role (counters, sequences, accumulator, states, invariants) in the caller and in the
body, or None with the reason given to `explain`. It does not look at what the cell computes:
that is the job of the pass that fuses a particular cell. Helpers below read the caller side:
`batch_major_source` (the [B, T, F] tensor under the time-major RESHAPE/TRANSPOSE and an
optional REVERSE_V2 for go_backwards) and `is_last_step_slice` / `swaps_time_batch` (how the
results are read after the loop).

API stability: other passes import this module; fields are only ever added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor

__all__ = [
    "Operand",
    "acc_row",
    "RnnLoop",
    "analyze_loop",
    "batch_major_source",
    "const_value",
    "is_last_step_slice",
    "replace_result",
    "scalar_value",
    "swaps_time_batch",
    "while_loops",
    "with_static_accumulator",
]

Explain = Callable[[str], None] | None


@dataclass(eq=False)
class Operand:
    """One loop-carried operand, seen from the caller, the body and the results.

    index:  position in WHILE inputs/outputs (= cond/body inputs and body outputs)
    init:   the caller tensor fed into the loop (WHILE input)
    arg:    the body's input tensor (value at the start of a step)
    next:   the body's output tensor (value at the end of a step)
    result: the caller tensor after the loop (WHILE output)
    """

    index: int
    init: Tensor
    arg: Tensor
    next: Tensor
    result: Tensor


@dataclass(eq=False)
class RnnLoop:
    """The roles of a recurrent WHILE loop's operands. See the module docstring.

    counters:   int32 scalar operands that start at a constant and step by +1
    time:       the counter the body reads the sequences (and writes the accumulator) with
    trip_count: the number of iterations T (from the LESS bounds in cond)
    sequences:  pass-through operands read as GATHER(seq, time) along axis 0, time-major [T, ...]
    steps:      for each sequence, the body tensor holding its step (x_t), same order
    acc:        the output accumulator or None; acc_kind is "last" ([1, B, u], holds the last
                step) or "sequence" ([T, B, u], acc[t] = step t); acc_value is the body tensor
                written into it each step (the per-step output, e.g. h')
    states:     recurrent states (read by the body and recomputed each step), in operand order
    invariants: other pass-through operands (read unchanged by every step)
    """

    sg: Subgraph
    op: Operator
    cond: Subgraph
    body: Subgraph
    operands: list[Operand]
    counters: list[Operand]
    time: Operand
    trip_count: int
    sequences: list[Operand]
    steps: list[Tensor]
    acc: Operand | None
    acc_kind: str | None
    acc_value: Tensor | None
    states: list[Operand]
    invariants: list[Operand] = field(default_factory=list)

    @property
    def name(self) -> str:
        """How --explain names the loop: WHILE 'first output name'."""
        return f"WHILE {_name(self.op)}"

    @property
    def seq(self) -> Operand:
        """The (first) input sequence."""
        return self.sequences[0]

    @property
    def x_t(self) -> Tensor:
        """The body tensor holding the (first) sequence's step."""
        return self.steps[0]

    @property
    def batch(self) -> int:
        return int(self.seq.init.shape[1]) if len(self.seq.init.shape) > 1 else 1


# --------------------------------------------------------------------------- small readers


def const_value(t: Tensor | None) -> np.ndarray | None:
    """The value of a constant tensor, else None."""
    return None if t is None else t.data


def scalar_value(t: Tensor | None):
    """The value of a constant one-element tensor as a Python scalar, else None."""
    v = const_value(t)
    return None if v is None or v.size != 1 else v.reshape(()).item()


def _other(op: Operator, t: Tensor) -> Tensor | None:
    """For a two-operand op reading `t`, the other operand."""
    if len(op.inputs) != 2:
        return None
    a, b = op.inputs
    return b if a is t else a if b is t else None


def while_loops(sg: Subgraph) -> list[Operator]:
    """The WHILE ops of a subgraph, in execution order."""
    return sg.ops_of_type("WHILE")


# --------------------------------------------------------------------------- analysis


def analyze_loop(sg: Subgraph, op: Operator, explain: Explain = None) -> RnnLoop | None:
    """Recognise a Keras/TF recurrent WHILE loop; None (reason sent to `explain`) if not."""

    def no(reason: str) -> None:
        if explain is not None:
            explain(f"WHILE {_name(op)}: {reason}")
        return None

    if op.type != "WHILE":
        return no("not a WHILE op")
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    if not isinstance(cond, Subgraph) or not isinstance(body, Subgraph):
        return no("cond/body subgraphs not found")
    n = len(op.inputs)
    if not (len(op.outputs) == len(body.inputs) == len(body.outputs) == len(cond.inputs) == n):
        return no("operand counts of WHILE, cond and body differ")
    if any(t is None for t in op.inputs):
        return no("an operand is absent")
    operands = [
        Operand(i, op.inputs[i], body.inputs[i], body.outputs[i], op.outputs[i]) for i in range(n)
    ]
    counters = [o for o in operands if _is_counter(body, o)]
    if not counters:
        return no("no loop counter (int32 scalar stepped by ADD 1)")
    trip = _trip_count(cond, counters, operands)
    if trip is None:
        return no("cond is not LESS(counter, T) or a LOGICAL_AND of such")
    sequences, steps, time = [], [], None
    for o in operands:
        if o in counters or o.next is not o.arg:
            continue
        reads = body.consumers(o.arg)
        gathers = [g for g in reads if _is_step_read(g, o.arg)]
        if not reads or len(gathers) != len(reads) or len(gathers) != 1:
            continue
        idx = next((c for c in counters if c.arg is gathers[0].inputs[1]), None)
        if idx is None:
            continue
        if time is not None and idx is not time:
            return no("sequences are read with different counters")
        time = idx
        sequences.append(o)
        steps.append(gathers[0].outputs[0])
    if not sequences:
        return no("no sequence read as GATHER(seq, counter)")
    if scalar_value(time.init) != 0:
        return no("the time counter does not start at 0")
    for s in sequences:
        if not s.init.shape or s.init.shape[0] < trip:
            return no(f"sequence {s.init.name} is shorter than the trip count {trip}")
    acc, acc_kind, acc_value = None, None, None
    states, invariants = [], []
    for o in operands:
        if o in counters or o in sequences:
            continue
        if o.next is o.arg:
            invariants.append(o)
            continue
        kind_value = _accumulator(body, o, time)
        if kind_value is not None:
            if acc is not None:
                return no("more than one output accumulator")
            acc, (acc_kind, acc_value) = o, kind_value
            continue
        if not body.consumers(o.arg):
            return no(f"operand {o.index} is rewritten each step but never read")
        states.append(o)
    if acc is not None and acc_kind == "sequence" and acc.init.shape[0] != trip:
        return no("the accumulator length differs from the trip count")
    return RnnLoop(
        sg, op, cond, body, operands, counters, time, trip, sequences, steps,
        acc, acc_kind, acc_value, states, invariants,
    )  # fmt: skip


def _name(op: Operator) -> str:
    outs = [t for t in op.outputs if t is not None]
    return repr(outs[0].name) if outs else ""


def _is_counter(body: Subgraph, o: Operand) -> bool:
    if o.init.type_name != "INT32" or o.init.shape != () or scalar_value(o.init) is None:
        return False
    step = body.producer(o.next)
    return (
        step is not None
        and step.type == "ADD"
        and _other(step, o.arg) is not None
        and scalar_value(_other(step, o.arg)) == 1
    )


def _trip_count(cond: Subgraph, counters: list[Operand], operands: list[Operand]) -> int | None:
    """min over the LESS(counter, T) leaves of T - start; None if cond has another shape.
    T is a constant, or an operand the body passes through unchanged with a constant initial
    value (TF 2.4 with batch None: T = SHAPE(x)[1], constant once the shapes are frozen)."""
    if len(cond.outputs) != 1:
        return None
    by_arg = {id(cond.inputs[c.index]): c for c in counters}
    bounds = []

    def bound(t: Tensor):
        v = scalar_value(t)
        at = next((i for i, x in enumerate(cond.inputs) if x is t), None)
        if v is None and at is not None and operands[at].next is operands[at].arg:
            v = scalar_value(operands[at].init)
        return v

    def walk(t: Tensor) -> bool:
        p = cond.producer(t)
        if p is None:
            return False
        if p.type == "LOGICAL_AND":
            return all(walk(x) for x in p.inputs)
        if p.type == "LESS" and id(p.inputs[0]) in by_arg and bound(p.inputs[1]) is not None:
            bounds.append(int(bound(p.inputs[1])) - int(scalar_value(by_arg[id(p.inputs[0])].init)))
            return True
        return False

    if not walk(cond.outputs[0]) or not bounds:
        return None
    return max(0, min(bounds))


def _is_step_read(g: Operator, arg: Tensor) -> bool:
    return (
        g.type == "GATHER"
        and g.inputs[0] is arg
        and g.option("axis", 0) == 0
        and g.option("batch_dims", 0) == 0
        and g.inputs[1].shape == ()
    )


def _accumulator(body: Subgraph, o: Operand, time: Operand) -> tuple[str, Tensor] | None:
    """("last", h) if acc' = RESHAPE(h, [1, ...]) and acc is never read;
    ("sequence", h) if acc' writes h at index `time` with the CONCATENATION/SLICE idiom
    (either seen through a CAST to the same type, which TF 2.4 writes after it)."""
    p = _through_noop_cast(body, o.next)
    if p is None:
        return None
    shape = tuple(o.init.shape)
    if p.type == "RESHAPE" and not body.consumers(o.arg):
        if len(shape) >= 2 and shape[0] == 1 and _reshape_adds_time(p, shape[1:]):
            return "last", p.inputs[0]
        return None
    if p.type != "CONCATENATION" or p.option("axis", 0) != 0 or len(p.inputs) != 3:
        return None
    head, mid, tail = (body.producer(t) for t in p.inputs)
    if mid is None or mid.type not in ("RESHAPE", "EXPAND_DIMS"):
        return None
    if not _reshape_adds_time(mid, shape[1:]):
        return None
    if not _is_slice_of(body, head, o.arg, begin_index=None, size_index=time.arg):
        return None
    if not _is_slice_of(body, tail, o.arg, begin_index=time.next, size_index=None):
        return None
    if set(body.consumers(o.arg)) != {head, tail}:
        return None
    return "sequence", mid.inputs[0]


def _through_noop_cast(body: Subgraph, t: Tensor) -> Operator | None:
    """The producer of `t`, or of its input if `t` is a CAST to the type it already has."""
    p = body.producer(t)
    if p is not None and p.type == "CAST" and p.inputs[0].type_name == p.outputs[0].type_name:
        return body.producer(p.inputs[0])
    return p


def acc_row(loop: RnnLoop) -> Tensor:
    """The [1, B, u] row that a "sequence" accumulator's CONCATENATION writes at `time`."""
    return _through_noop_cast(loop.body, loop.acc.next).inputs[1]


def with_static_accumulator(loop: RnnLoop) -> RnnLoop:
    """`loop` seen with its in-place accumulator as the accumulator: a state written as
    acc' = DYNAMIC_UPDATE_SLICE(acc, RESHAPE(h', [1, B, u]), PACK(t, 0, 0)) (the static form
    that static-loop-outputs writes; analyze_loop lists it among the states) is moved to
    `acc` with acc_kind "sequence". The loop itself if it has no such state."""
    if loop.acc is not None:
        return loop
    for o in loop.states:
        row = _update_slice_row(loop.body, o, loop.time)
        if row is not None and o.init.shape[:1] == (loop.trip_count,):
            rest = [s for s in loop.states if s is not o]
            return replace(loop, acc=o, acc_kind="sequence", acc_value=row, states=rest)
    return loop


def _update_slice_row(body: Subgraph, o: Operand, time: Operand) -> Tensor | None:
    """h' if o' = DYNAMIC_UPDATE_SLICE(o, RESHAPE(h', [1, B, u]), PACK(time, 0, 0))."""
    p = body.producer(o.next)
    if p is None or p.type != "DYNAMIC_UPDATE_SLICE" or p.inputs[0] is not o.arg:
        return None
    row, index = body.producer(p.inputs[1]), body.producer(p.inputs[2])
    if body.consumers(o.arg) != [p] or row is None or row.type != "RESHAPE":
        return None
    if not _reshape_adds_time(row, tuple(o.init.shape[1:])) or index is None:
        return None
    if index.type != "PACK" or index.option("axis", 0) != 0 or index.inputs[0] is not time.arg:
        return None
    rest = [scalar_value(t) for t in index.inputs[1:]]
    return (
        row.inputs[0]
        if len(index.inputs) == len(o.init.shape) and rest == [0] * len(rest)
        else None
    )


def _reshape_adds_time(p: Operator, step_shape: tuple) -> bool:
    """RESHAPE(h [B, u]) -> [1, B, u] (or EXPAND_DIMS(h, 0), TF 2.4's), where [B, u] is the
    accumulator's row shape."""
    step = tuple(step_shape)
    if p.type == "EXPAND_DIMS" and scalar_value(p.inputs[1]) not in (0, -len(step) - 1):
        return False
    return tuple(p.inputs[0].shape) == step and tuple(p.outputs[0].shape) == (1, *step)


def _is_slice_of(body, sl, acc_arg, begin_index, size_index) -> bool:
    """SLICE(acc, begin, size) with the leading begin (or size) entry = the given counter
    tensor and the rest constant (0 for begin, -1 for size)."""
    if sl is None or sl.type != "SLICE" or sl.inputs[0] is not acc_arg:
        return False
    begin, size = sl.inputs[1], sl.inputs[2]
    rank = len(acc_arg.shape)
    if begin_index is None:
        b = const_value(begin)
        ok_begin = b is not None and not np.any(b)
        ok_size = _counter_then(body, size, size_index, -1, rank)
    else:
        s = const_value(size)
        ok_size = s is not None and np.all(s == -1)
        ok_begin = _counter_then(body, begin, begin_index, 0, rank)
    return bool(ok_begin and ok_size)


def _counter_then(body, t: Tensor, counter: Tensor, fill: int, rank: int) -> bool:
    """t = CONCATENATION(RESHAPE(counter, [1]), const [fill] * (rank - 1))."""
    p = body.producer(t)
    if p is None or p.type != "CONCATENATION" or len(p.inputs) != 2:
        return False
    r = body.producer(p.inputs[0])
    rest = const_value(p.inputs[1])
    return (
        r is not None
        and r.type == "RESHAPE"
        and r.inputs[0] is counter
        and rest is not None
        and rest.size == rank - 1
        and np.all(rest == fill)
    )


# --------------------------------------------------------------------------- caller side


def batch_major_source(sg: Subgraph, t: Tensor) -> tuple[Tensor, bool] | None:
    """(x, reversed) if time-major `t` [T, B, ...] is RESHAPE/TRANSPOSE(x [B, T, ...]),
    optionally followed by REVERSE_V2 along time (go_backwards); else None."""
    reverse = False
    p = sg.producer(t)
    if p is not None and p.type == "REVERSE_V2":
        axes = const_value(p.inputs[1])
        if axes is None or axes.reshape(-1).tolist() != [0]:
            return None
        reverse, t = True, p.inputs[0]
        p = sg.producer(t)
    if p is None or not swaps_time_batch(p):
        return None
    return p.inputs[0], reverse


def swaps_time_batch(p: Operator) -> bool:
    """p maps [a, b, ...] to [b, a, ...]: TRANSPOSE with perm [1, 0, 2, ...], or a RESHAPE
    that only moves a size-1 axis (a == 1 or b == 1)."""
    if p.type not in ("TRANSPOSE", "RESHAPE") or not p.inputs or p.inputs[0] is None:
        return False
    src, out = tuple(p.inputs[0].shape), tuple(p.outputs[0].shape)
    if len(src) < 2 or out != (src[1], src[0], *src[2:]):
        return False
    if p.inputs[0].is_dynamic or p.outputs[0].is_dynamic:
        return False
    if p.type == "RESHAPE":
        return 1 in src[:2]
    perm = const_value(p.inputs[1])
    return perm is not None and perm.reshape(-1).tolist() == [1, 0, *range(2, len(src))]


def is_last_step_slice(p: Operator, length: int) -> bool:
    """p = STRIDED_SLICE(acc [length, ...]) taking acc[-1] (or acc[length - 1]) along axis 0
    with that axis shrunk and every other axis whole."""
    if p.type != "STRIDED_SLICE" or len(p.inputs) != 4:
        return False
    src = p.inputs[0]
    begin, end, strides = (const_value(x) for x in p.inputs[1:])
    if begin is None or end is None or strides is None or not len(src.shape):
        return False
    o = p.options if isinstance(p.options, dict) else {}
    rank = len(src.shape)
    if int(o.get("ellipsis_mask", 0)) or int(o.get("new_axis_mask", 0)):
        return False
    if int(o.get("shrink_axis_mask", 0)) != 1 or np.any(strides != 1):
        return False
    if o.get("offset", False):
        return False
    b0 = int(begin[0])
    if b0 not in (-1, length - 1):
        return False
    bmask, emask = int(o.get("begin_mask", 0)), int(o.get("end_mask", 0))
    for k in range(1, rank):
        if not (bmask >> k) & 1 and int(begin[k]) != 0:
            return False
        if not (emask >> k) & 1 and int(end[k]) < src.shape[k]:
            return False
    return tuple(p.outputs[0].shape) == tuple(src.shape[1:])


# --------------------------------------------------------------------------- loop rewrites
# (added for the loop passes of issue 5: static-loop-outputs, hoist-input-projection,
#  loop cleanup, fuse-simple-rnn; the functions above are the issue-4 analysis)


def subgraph_users(model, sg: Subgraph) -> int:
    """How many ops of the model refer to `sg` (as cond, body, branch, ...)."""
    return len(model.subgraph_users(sg))


def rnn_loops(model, explain: Explain = None):
    """Every recurrent WHILE loop of the model whose cond and body no other op uses, as an
    RnnLoop (analyze_loop). Each subgraph's WHILE ops are listed before its loops are
    yielded, so a pass may rebuild the loop it was given (rebuild_while) and go on."""
    for sg in list(model.subgraphs):
        for op in while_loops(sg):
            loop = analyze_loop(sg, op, explain)
            if loop is None:
                continue
            if subgraph_users(model, loop.body) != 1 or subgraph_users(model, loop.cond) != 1:
                if explain is not None:
                    explain(f"{loop.name}: its cond or body is shared with another op")
                continue
            yield loop


def step_feeds(loop: RnnLoop, t: int, rng: np.random.Generator) -> dict:
    """Random body inputs for step `t`: every counter = its start + t, float operands
    uniform in [-1, 1), other operands zeros. For proving a rewrite of the body on one step."""
    feeds = {}
    for o in loop.operands:
        dtype = o.arg.dtype or np.float32
        if any(o is c for c in loop.counters):
            feeds[o.arg] = np.array(int(scalar_value(o.init)) + t, dtype)
        elif np.dtype(dtype).kind == "f":
            feeds[o.arg] = rng.uniform(-1, 1, o.arg.shape).astype(dtype)
        else:
            feeds[o.arg] = np.zeros(o.arg.shape, dtype)
    return feeds


def replace_result(sg: Subgraph, old: Tensor, new: Tensor) -> None:
    """Every reader of `old` reads `new`: ops, subgraph outputs and signature defs. A subgraph
    output keeps its name (the two tensors swap names), so callers see the same outputs."""
    sg.replace_all_uses(old, new, keep_name=True)


# --------------------------------------------------------------------------- loop rewrites (2)
# (issue-5 loop passes, continued: change which operands a WHILE loop carries)


def _like(sg: Subgraph, t: Tensor, name: str | None = None) -> Tensor:
    """A fresh tensor of `sg` with t's type, shape and quantization."""
    new = sg.new_tensor(name or t.name, t.shape, t.dtype, quantization=t.quantization)
    new.type, new.shape_signature = t.type, t.shape_signature
    return new


def add_split(sg: Subgraph, x: Tensor, axis: Tensor, outs: list[Tensor], sizes, name: str):
    """outs = `x` split along the constant `axis` into parts of `sizes`: SPLIT when the sizes
    are all equal, else SPLIT_V with a new constant of the sizes named `name`."""
    if len(set(sizes)) == 1:
        sg.add_op("SPLIT", [axis, x], outs, {"num_splits": len(sizes)})
    else:
        size_c = sg.new_constant(np.array(sizes, np.int32), name)
        sg.add_op("SPLIT_V", [x, size_c, axis], outs, {"num_splits": len(sizes)})


def rebuild_while(sg: Subgraph, op: Operator, drop=(), add=()) -> tuple[Operator, list[Tensor]]:
    """Replace WHILE `op` of `sg` by one that no longer carries the operands at indices `drop`
    and carries the caller tensors `add` as new pass-through operands (appended last).
    Returns the new op and the body inputs of the added operands. The caller has checked that
    nothing reads the dropped operands (results, cond/body args) except their own next value.
    Kept results are the same values under the same names; an RnnLoop of `op` is stale."""
    import dataclasses

    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    drop = set(drop)
    keep = [i for i in range(len(op.inputs)) if i not in drop]
    cond.inputs = [cond.inputs[i] for i in keep]
    body.inputs = [body.inputs[i] for i in keep]
    body.outputs = [body.outputs[i] for i in keep]
    args = []
    for t in add:
        cond.inputs.append(_like(cond, t, f"{cond.name}/arg_{t.name}"))
        arg = _like(body, t, f"{body.name}/arg_{t.name}")
        body.inputs.append(arg)
        body.outputs.append(arg)
        args.append(arg)
    old_results = [op.outputs[i] for i in keep]
    new_results = [_like(sg, t) for t in old_results] + [_like(sg, t) for t in add]
    for old_t, new_t in zip(old_results, new_results):
        new_t.is_variable = old_t.is_variable  # a result may be a fused op's in-place state
    inputs = [op.inputs[i] for i in keep] + list(add)
    new = sg.add_op(dataclasses.replace(op, inputs=inputs, outputs=new_results))
    for old_t, new_t in zip(old_results, new_results):
        replace_result(sg, old_t, new_t)
    sg.remove_op(op)
    return new, args
