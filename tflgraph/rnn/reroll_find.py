"""Find T chained copies of one recurrent cell in a flat (`unroll=True`) graph.

A converter writes an unrolled RNN layer as

    x_0, ..., x_{T-1} = UNPACK(seq [T, B, F], axis 0)   # or SPLIT, STRIDED_SLICE, GATHER
    step t:  states_t = cell(x_t, states_{t-1})      # the same ops and weights every step;
                                                    # step 0 specialised (zero state folded)
    y = PACK(h_0, ..., h_{T-1}, axis 0)   or   h_{T-1} read after the chain

(tflgraph.rnn.reroll_steps reads the steps and the per-step outputs in their other forms.)
`find_unrolled(sg, steps)` assigns every op that depends on the sequence to the step t of the
last x_t it depends on (region R_t), gives each op of a region a key made of its type,
options, output shapes and operands (x_t, a constant's contents, an op of the same region by
its key, a value of the previous step by its shape, a tensor from outside the chain by
identity; a fused activation as the activation op reading the op without it, so the last
step of a relu LSTM, whose ADD + RELU of c_T the converter fused, computes the same). The cell
is what the middle step m = (T-1) // 2 computes for itself, the next step or a PACK (not the
other direction's input projection of a Bidirectional layer, which reads the same x_t), and
every middle region R_1..R_{T-2} must hold the same keys, each once.
The ops at the end of a region that only prepare the next step (the recurrent projection
FC(h_t, U)) are its "tail": the loop body is tail_{m-1} + the rest of R_m for a middle step m,
so that its states are what one step hands the next (h and c for an LSTM). What the last step
hands to the rest of the graph must be one of those states, or the per-step output PACKed.

The result is only a candidate: tflgraph.rnn.reroll_loop builds the loop and the reroll pass
proves it on the reference interpreter (the specialised first step included).

int8 chains: a key holds each value's quantization parameters, so the steps of a converter's
int8 model (each with its own calibrated scales) are not one cell. `find_unrolled(...,
exact=False)` leaves the scales of values and of int32 constants (biases, whose integers follow
their input's scale) out of the keys, for `--requantize` (tflgraph.rnn.reroll_requant), which
reads every step's copy of each body value in `Unrolled.copies`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tflgraph.io.schema import Options
from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.rnn.reroll_steps import Steps, step_outputs


@dataclass(eq=False)
class Unrolled:
    """One unrolled chain and the loop that replaces it (see the module docstring).

    body_ops:   tail_{m-1} + R_m without its tail, in execution order
    x:          x_m, the step input the body reads
    states:     values of step m-1 the body reads; nexts: the body's values for step m + 1
    invariants: tensors from outside the chain the body reads (not constants)
    pack:       the PACK (or CONCATENATION) of the per-step outputs y_t along `out_axis`, or
                None; y: y_m
    exits:      (tensor of the last step read after the chain, index of its state)
    copies:     each output of a body op and each state: the same value in every step that
                computes it (step 0 too where it is not specialised)
    """

    sg: Subgraph
    source: Steps
    backwards: bool  # step t reads x_{T-1-t}
    steps: int
    body_ops: list[Operator]
    x: Tensor
    states: list[Tensor]
    nexts: list[Tensor]
    invariants: list[Tensor]
    pack: Operator | None
    out_axis: int
    y: Tensor | None
    exits: list[tuple[Tensor, int]]
    copies: dict[Tensor, list[Tensor]]


def find_unrolled(
    sg: Subgraph, source: Steps, backwards: bool = False, exact: bool = True
) -> Unrolled | str:
    """The chain of cells that reads the steps of `source` (last to first if `backwards`: the
    backward layer of a Bidirectional), or why there is none. `exact=False`: steps that differ
    only in quantization parameters are copies of one cell (see the module docstring)."""
    xs, steps = source.xs[:: -1 if backwards else 1], len(source.xs)
    step_of = _steps(sg, xs)
    regions: list[list[Operator]] = [[] for _ in range(steps)]
    for op in sg.operators:
        if op in step_of:
            regions[step_of[op]].append(op)
    keys: list[dict] = []
    digests: dict[int, str] = {}  # id(buffer) -> digest of its contents, for this search
    for t, region in enumerate(regions):
        got = _keys(sg, region, t, xs[t], step_of, digests, exact)
        if isinstance(got, str):
            return f"step {t}: {got}"
        keys.append(got)
    m = (steps - 1) // 2
    cell = {keys[m][op] for op in _chain_ops(sg, regions[m], regions[m + 1])}
    raw, regions = regions, [regions[0]] + [[op for op in r if keys[t][op] in cell] for t, r in
                                            enumerate(regions[1:], 1)]  # fmt: skip
    by_key = [{keys[t][op]: op for op in r} for t, r in enumerate(regions)]
    for t in range(1, steps - 1):
        if set(by_key[t]) != cell:
            int8 = any(o is not None and o.is_quantized for op in raw[t] for o in op.outputs)
            why = "quantized with other scales" if int8 else "not one repeated cell"
            return f"step {t} does not compute what step {m} does ({why})"
    kept = set(regions[-1])
    exits = [
        (t, keys[-1][op], k)
        for op in kept
        for k, t in enumerate(op.outputs)
        if t is not None and _read_outside(sg, t, kept)
    ]
    if not exits:
        return "nothing after the last step reads it"
    pack = _pack(sg, regions, keys, xs)
    if isinstance(pack, str):
        return pack
    out_axis = step_outputs(pack, steps) if pack is not None else 0
    out_keys = {(k, i) for _, k, i in exits}
    if pack is not None:
        y_op = sg.producer(pack.inputs[m])
        out_keys.add((keys[m][y_op], y_op.outputs.index(pack.inputs[m])))
    tail = _tail(sg, regions[m], regions[m + 1], keys[m], out_keys)
    prev_tail = [op for op in regions[m - 1] if keys[m - 1][op] in {keys[m][p] for p in tail}]
    body_ops = prev_tail + [op for op in regions[m] if op not in tail]
    got = _wiring(sg, body_ops, regions[m - 1], set(prev_tail), step_of, keys, by_key, m, xs)
    if isinstance(got, str):
        return got
    states, nexts, invariants = got
    state_keys = {_out_key(sg, n, keys[m]): j for j, n in enumerate(nexts)}
    found = []
    for t, k, i in exits:
        if pack is not None and not _read_outside(sg, t, kept | {pack}):
            continue  # the last step's output, PACKed
        if (k, i) not in state_keys:
            return f"{t.name}, read after the last step, is not a state the steps pass on"
        found.append((t, state_keys[(k, i)]))
    y = pack.inputs[m] if pack is not None else None
    key_of = {op: keys[m - 1 if op in prev_tail else m][op] for op in body_ops}
    key_of.update((sg.producer(s), keys[m - 1][sg.producer(s)]) for s in states)
    copies = {
        o: [c.outputs[k] for c in (b.get(key) for b in by_key) if c is not None]
        for op, key in key_of.items()
        for k, o in enumerate(op.outputs)
        if o is not None
    }
    return Unrolled(
        sg, source, backwards, steps, body_ops, xs[m], states, nexts, invariants, pack,
        out_axis, y, found, copies,
    )  # fmt: skip


_GATHERS = ("PACK", "CONCATENATION")  # what collects the per-step outputs (step_outputs)


def _chain_ops(sg: Subgraph, region: list, next_region: list) -> set[Operator]:
    """The ops of a step that belong to its cell: those whose values the step itself, the next
    step or a PACK reads. Not the other direction's input projection FC(x_t, W_backward),
    which a Bidirectional layer computes from the same x_t."""
    nxt, keep = set(next_region), set()
    for op in reversed(region):
        readers = [c for o in op.outputs if o is not None for c in sg.consumers(o)]
        if any(c in nxt or c in keep or c.type in _GATHERS for c in readers):
            keep.add(op)
    return keep


def _steps(sg: Subgraph, xs: list[Tensor]) -> dict[Operator, int]:
    """Each op that depends on a step input: the last step t whose x_t it depends on."""
    seen: dict[Tensor, int] = {x: 1 << t for t, x in enumerate(xs)}
    out = {}
    for op in sg.operators:
        mask = 0
        for t in op.inputs:
            mask |= seen.get(t, 0) if t is not None else 0
        if mask:
            out[op] = mask.bit_length() - 1
            for t in op.outputs:
                if t is not None:
                    seen[t] = mask
    return out


def _keys(sg, region, t, x_t, step_of, digests, exact=True) -> dict[Operator, str] | str:
    """Each op of region t keyed by what it computes from what (see the module docstring)."""
    keys: dict[Operator, str] = {}
    for op in region:
        labels = []
        for i in op.inputs:
            p = sg.producer(i) if i is not None else None
            if i is None:
                labels.append("-")
            elif i is x_t:
                labels.append("x")
            elif i.is_constant:
                labels.append(f"c{_digest(i, digests, exact)}")
            elif p is None or p not in step_of:
                labels.append(f"e{id(i)}")
            elif step_of[p] == t:
                labels.append(f"i{keys[p]}.{p.outputs.index(i)}")
            elif step_of[p] == t - 1:
                labels.append(f"s{i.type}{i.shape}")
            else:  # an older step's value: after the chain (PACK), never in a cell copy
                labels.append(f"o{id(i)}")
        keys[op] = _key(op, labels, [_form(o, exact) for o in op.outputs])
    if len(set(keys.values())) != len(keys):
        return "two ops compute the same thing (ambiguous copy)"
    return keys


_ACTIVATION_OPS = ("RELU", "RELU6", "RELU_N1_TO_1", "TANH")  # fused activations that are ops


def _key(op: Operator, labels: list[str], shapes: list[str]) -> str:
    """The key of `op` (type, options, operand labels, output forms). A fused activation is
    keyed as the activation op reading the op without it: converters fuse ADD + RELU into one
    ADD only where nothing else reads the sum, as in the last step of a relu LSTM (its c_T),
    and that step must still compute what the middle steps do."""
    options = op.options
    if isinstance(options, Options):
        options = Options(options.kind, options)
        options.pop("fused_activation_function", None)
    key = _hash(f"{op.type}|{options!r}|{labels}|{shapes}")
    if op.activation == "NONE":
        return key
    if op.activation not in _ACTIVATION_OPS:
        return _hash(f"{key}|{op.activation}")
    return _hash(f"{op.activation}|None|{[f'i{key}.0']}|{shapes}")


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _form(t: Tensor | None, exact: bool = True) -> str:
    """A value's type, shape and quantization (int8 steps must share their scales, unless not
    `exact`)."""
    if t is None:
        return "-"
    return f"{t.type}{t.shape}{repr(t.quantization) if t.is_quantized and exact else ''}"


def _digest(t: Tensor, digests: dict, exact: bool = True) -> str:
    """A constant's type, shape, scales and contents as a short string (equal weights, equal
    digests, whether or not they share a buffer); `digests` caches the contents' hash. Not
    `exact`: a quantized int32 constant (a bias, its scale the input's times the weights')
    by its type and shape alone."""
    if not exact and t.is_quantized and t.type_name == "INT32":
        return _form(t, exact)
    key = id(t.buffer)
    if key not in digests:
        digests[key] = hashlib.sha1(t.buffer.data.tobytes()).hexdigest()[:20]
    return f"{_form(t)}{digests[key]}"


def _read_outside(sg: Subgraph, t: Tensor, ops: set) -> bool:
    return any(t is o for o in sg.outputs) or any(c not in ops for c in sg.consumers(t))


def _out_key(sg: Subgraph, t: Tensor, keys: dict) -> tuple[str, int]:
    p = sg.producer(t)
    return keys[p], p.outputs.index(t)


def _pack(sg, regions, keys, xs) -> Operator | None | str:
    """The PACK of the per-step outputs (None if the steps hand nothing on but to the next
    step), or why the middle steps' values are read otherwise."""
    packs = set()
    for t in range(1, len(regions) - 1):
        own = set(regions[t]) | set(regions[t + 1])
        for op in regions[t]:
            for o in op.outputs:
                if o is not None and _read_outside(sg, o, own):
                    readers = [c for c in sg.consumers(o) if c not in own]
                    if any(o is s for s in sg.outputs) or len(readers) != 1:
                        return f"{o.name} of step {t} is read after the chain (not one PACK)"
                    packs.add(readers[0])
    if not packs:
        return None
    pack = packs.pop()
    if packs or step_outputs(pack, len(xs)) is None:
        return "the per-step outputs are not PACKed or CONCATENATED along one axis, one per step"
    m = (len(xs) - 1) // 2
    y_op = sg.producer(pack.inputs[m])
    if y_op not in keys[m]:
        return "the PACKed values are not outputs of the steps"
    y_key = (keys[m][y_op], y_op.outputs.index(pack.inputs[m]))
    for t in range(1, len(xs)):
        p = sg.producer(pack.inputs[t])
        if p not in keys[t] or (keys[t][p], p.outputs.index(pack.inputs[t])) != y_key:
            return f"PACK input {t} is not step {t}'s output"
    return pack


def _tail(sg, region, next_region, keys, out_keys) -> set[Operator]:
    """Ops of `region` that only prepare the next step: not needed for the values handed on
    (out_keys) and read by the next step or other tail ops alone."""
    needed = set()
    stack = [op for op in region if any((keys[op], k) in out_keys for k in range(len(op.outputs)))]
    inside = set(region)
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed.add(op)
        stack.extend(p for p in (sg.producer(i) for i in op.inputs if i is not None) if p in inside)
    nxt, tail = set(next_region), set()
    for op in reversed(region):
        if op in needed:
            continue
        readers = [c for o in op.outputs if o is not None for c in sg.consumers(o)]
        if readers and all(c in nxt or c in tail for c in readers):
            tail.add(op)
    return tail


def _wiring(sg, body_ops, prev_region, prev_tail, step_of, keys, by_key, m, xs):
    """(states, nexts, invariants) of the body, or why the body reads something it cannot."""
    prev = set(prev_region) - prev_tail
    body = set(body_ops)
    states, nexts, invariants = [], [], []
    for op in body_ops:
        for i in op.inputs:
            p = sg.producer(i) if i is not None else None
            if i is None or i.is_constant or i is xs[m] or p in body:
                continue
            if p in prev:
                if i not in states:
                    twin = by_key[m].get(keys[m - 1][p])
                    if twin is None:
                        return "a state of step m-1 has no counterpart in step m"
                    states.append(i)
                    nexts.append(twin.outputs[p.outputs.index(i)])
            elif p is None or p not in step_of:
                if i not in invariants:
                    invariants.append(i)
            else:
                return f"the cell reads {i.name} from another step"
    if not states:
        return "the steps pass nothing on (no recurrent state)"
    return states, nexts, invariants
