"""Describe a recurrent cell once, as equations on numpy arrays; find the loops that compute it.

A `Cell` names its gate pre-activations, each affine in (x_t, h), and its states (h first),
and gives one step as a function on numpy arrays:

    def minimal_gated(g, s):                       # g: gate pre-activations, s: states
        z = sigmoid(g["z"])
        return {"h": z * s["h"] + (1 - z) * np.tanh(g["n"])}

    cell = Cell("minimal-gated", gates=("z", "n"), states=("h",), step=minimal_gated)
    for match in find_cells(model, cell):          # every WHILE loop computing that cell
        match.gates["z"].W, match.gates["z"].U, match.gates["z"].b

`match_cell(loop, cell)` recognises a loop by what it computes, as fuse-lstm's evaluation
recogniser does (tflgraph.rnn.probe), not by the converter's op sequence:
  1. every float tensor the body computes from x_t and h alone is read off by evaluation as
     an affine map W x + U h + b (F + u + 1 evaluations of the body, whatever its size); the
     ones that are affine and that a non-affine op reads are the body's gate pre-activations
     (a constant, or a copy of x_t or h, is none; a merged one is cut into gates of width u);
  2. the states of the loop are given the cell's state names, and the pre-activations its
     gate names, in the order that makes `step` reproduce the body's next states on random
     (x, states) -- the gate order and the weights' layout come out of the numbers;
  3. the step is proven on 3 more random (x, states) against the body's next states and the
     accumulated output (1e-4 relative: the equations run in float64, the body in float32).
The match is the loop (tflgraph.rnn.loops.RnnLoop), its states by name and each gate's map.

Built-in descriptions: LSTM (Keras gate names i, f, g, o; tanh), GRU (Keras' reset_after=True
and PyTorch's form), SIMPLE_RNN (tanh) and SIMPLE_RNN_RELU.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Model, Tensor
from tflgraph.reference.equivalence import check_values, compare
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.rnn.loops import Operand, RnnLoop, analyze_loop, while_loops, with_static_accumulator
from tflgraph.rnn.probe import Affine, read_affine

__all__ = [
    "GRU",
    "LSTM",
    "SIMPLE_RNN",
    "SIMPLE_RNN_RELU",
    "Cell",
    "CellMatch",
    "find_cells",
    "match_cell",
    "prove_cell",
    "sigmoid",
]

Step = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]
_MAX_ORDERS = 5040  # gate orders tried at most: 10 pre-activations for 4 gates, 18 for 3


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, for steps written by hand."""
    return 1 / (1 + np.exp(-x))


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: `step(gates, states)` returns every next state by name, from the
    gate pre-activations (each affine in x_t and the first state) and the states, all numpy
    arrays [rows, units]. `output` is the state the loop accumulates (default: the first)."""

    name: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    step: Step
    output: str | None = None


@dataclass(eq=False)
class CellMatch:
    """A loop proven to compute `cell`: its states by the cell's names, each gate's map."""

    cell: Cell
    loop: RnnLoop
    states: dict[str, Operand]
    gates: dict[str, Affine]

    @property
    def units(self) -> int:
        return int(self.gates[self.cell.gates[0]].b.size)

    def unroll(self, x: np.ndarray) -> np.ndarray:
        """The cell run over a batch-major sequence x [B, T, F] from zero states, in float64:
        the output state at every step, [B, T, u] (what the loop computes, in numpy)."""
        h = self.cell.states[0]
        s = {name: np.zeros((x.shape[0], self.units)) for name in self.cell.states}
        out = []
        for t in range(x.shape[1]):
            xt = x[:, t].astype(np.float64)
            s = self.cell.step({n: m(xt, s[h]) for n, m in self.gates.items()}, s)
            out.append(s[self.cell.output or h])
        return np.stack(out, axis=1)


def find_cells(model: Model, cell: Cell, explain: Callable[[str], None] | None = None):
    """Every WHILE loop of the model that computes `cell`, as a CellMatch (a loop's
    DYNAMIC_UPDATE_SLICE buffer, static-loop-outputs' form, counts as its accumulator)."""
    for sg in model.subgraphs:
        for op in while_loops(sg):
            loop = analyze_loop(sg, op, explain)
            loop = with_static_accumulator(loop) if loop is not None else None
            match = match_cell(loop, cell, explain) if loop is not None else None
            if match is not None:
                yield match


def match_cell(loop: RnnLoop, cell: Cell, explain: Callable[[str], None] | None = None):
    """The CellMatch of a loop whose body computes `cell`, or None (reason to `explain`)."""
    reasons: list[str] = []
    if len(loop.sequences) != 1 or len(loop.states) != len(cell.states):
        reasons.append(
            f"{len(loop.sequences)} sequence(s) and {len(loop.states)} state(s), the cell "
            f"reads 1 and has {len(cell.states)}"
        )
    else:
        for order in itertools.permutations(loop.states):
            states = dict(zip(cell.states, order))
            match = _match_states(loop, cell, states, reasons)
            if match is not None:
                return match
    if explain is not None:
        explain(f"{loop.name}: not the {cell.name} cell (by evaluation): {reasons[0]}")
    return None


def _match_states(loop: RnnLoop, cell: Cell, states: dict, reasons: list) -> CellMatch | None:
    h = states[cell.states[0]]
    if any(o.arg.shape != h.arg.shape for o in states.values()):
        reasons.append("the states differ in shape")
        return None
    found = gate_terms(loop, h.arg)
    if isinstance(found, str):
        reasons.append(found)
        return None
    units = h.arg.shape[-1]
    terms = [m.block(k, units) for m in found for k in range(m.b.size // units)]
    if len(terms) < len(cell.gates):
        reasons.append(
            f"{len(terms)} gate pre-activation(s) affine in (x_t, h) found, the cell has "
            f"{len(cell.gates)}: a gate is not affine in (x_t, h)"
        )
        return None
    orders = itertools.permutations(terms, len(cell.gates))
    if math.perm(len(terms), len(cell.gates)) > _MAX_ORDERS:
        reasons.append(f"{len(terms)} affine terms for {len(cell.gates)} gates: too many orders")
        return None
    sample = _sample(loop, states, np.random.default_rng(1))
    if isinstance(sample, str):
        reasons.append(sample)
        return None
    for gates in orders:
        match = CellMatch(cell, loop, states, dict(zip(cell.gates, gates)))
        if _reproduces(match, *sample):
            why = prove_cell(match)
            if why is None:
                return match
            reasons.append(why)
            return None
    reasons.append(
        f"no order of the {len(terms)} affine terms as gates {', '.join(cell.gates)} gives "
        "the body's next states (another cell, or an extra term such as a peephole)"
    )
    return None


def gate_terms(loop: RnnLoop, h: Tensor) -> list[Affine] | str:
    """The body's gate pre-activations in (x_t, h), by evaluation (see the module docstring,
    step 1), in the body's op order; or why they cannot be read."""
    body, batch = loop.body, loop.x_t.shape[0]
    known, computed = {id(loop.x_t), id(h)}, []
    for op in body.operators:  # execution order: an op's inputs are known before it
        ins = [t for t in op.inputs if t is not None]
        if any(id(t) in known for t in ins) and all(id(t) in known or t.is_constant for t in ins):
            known.update(id(t) for t in op.outputs)
            computed.extend(op.outputs)
    floats = [
        t
        for t in computed
        if t.type_name == "FLOAT32" and t.shape and int(np.prod(t.shape)) % batch == 0
    ]
    if not floats:
        return "nothing in the body is computed from x_t and h alone"
    got = read_affine(loop, h, floats)
    if isinstance(got, str):
        return got
    maps, (x, hv, values) = got
    affine = {
        id(t): m
        for t, m, v in zip(floats, maps, values)
        if compare(m(x, hv), v, rtol=1e-4) is None and (m.W.any() or m.U.any())
    }
    terms, sums = [], set()
    for t in floats:
        m = affine.get(id(t))
        readers = body.consumers(t)
        if m is None or _is_copy(m) or t in body.outputs:
            continue
        if all(id(o) in affine for r in readers for o in r.outputs if o is not None):
            continue  # only read by affine ops: not a gate's final pre-activation
        root = _sum_root(body, t)
        if root is None:
            terms.append(m)
        elif id(root) not in sums:  # a sum of affine and other terms: its affine part
            sums.add(id(root))
            terms.append(_affine_part(body, root, affine, m.b.size))
    return terms


def _plain_add(op) -> bool:
    return op is not None and op.type == "ADD" and op.activation == "NONE"


def _sum_root(body, t: Tensor) -> Tensor | None:
    """The top of the ADD tree `t` is a term of (each inner sum read once), or None if `t`
    is not added to anything: a bias added after the non-affine term (tanh(W x + r * hn + b),
    onnx2tf's GRU) belongs to the gate all the same."""
    readers, root = body.consumers(t), None
    while len(readers) == 1 and _plain_add(readers[0]) and readers[0].outputs[0].shape == t.shape:
        root = readers[0].outputs[0]
        readers = body.consumers(root)
    return root


def _affine_part(body, root: Tensor, affine: dict, width: int) -> Affine:
    """The sum of the affine and constant leaves of the ADD tree under `root`."""
    maps, bias, stack = [], np.zeros(width, np.float32), [root]
    while stack:
        t = stack.pop()
        p = body.producer(t)
        if id(t) in affine:
            maps.append(affine[id(t)])
        elif t.is_constant and t.type_name == "FLOAT32" and t.data.size in (1, width):
            bias = bias + t.data.reshape(-1).astype(np.float32)
        elif _plain_add(p):
            stack.extend(p.inputs)
    return Affine(sum(m.W for m in maps), sum(m.U for m in maps), sum(m.b for m in maps) + bias)


def _is_copy(m: Affine) -> bool:
    """True if every row of the map picks one entry of x_t or h unscaled (a RESHAPE of h)."""
    wu = np.concatenate([m.W, m.U], axis=1)
    return not m.b.any() and bool(np.all((wu != 0).sum(axis=1) == 1) and np.all(wu.sum(1) == 1))


def _sample(loop: RnnLoop, states: dict, rng: np.random.Generator):
    """(feeds, body values) at random x_t and states: the next states, then the output."""
    feeds = _sample_feeds(loop, states, rng)
    try:
        return feeds, evaluate_tensors(loop.body, feeds, _wanted(loop, states)[0])
    except (TflgraphError, ValueError, ArithmeticError, LookupError) as e:
        return f"the next states are not computable from x_t and the states ({e})"


def _wanted(loop: RnnLoop, states: dict) -> tuple[list[Tensor], list[str]]:
    """The body tensors a cell step must reproduce and what each is."""
    tensors = [o.next for o in states.values()]
    what = [f"next {name}" for name in states]
    if loop.acc is not None:
        tensors.append(loop.acc_value)
        what.append("the accumulated output")
    return tensors, what


def _equations(match: CellMatch, feeds: dict) -> list[np.ndarray]:
    """The cell's step on the fed values (float64), in _wanted's order."""
    loop, cell = match.loop, match.cell
    rows = lambda t: np.asarray(feeds[t], np.float64).reshape(loop.x_t.shape[0], -1)  # noqa: E731
    s = {name: rows(o.arg) for name, o in match.states.items()}
    x, h = rows(loop.x_t), s[cell.states[0]]
    new = cell.step({name: m(x, h) for name, m in match.gates.items()}, s)
    out = [new[name].reshape(o.next.shape) for name, o in match.states.items()]
    if loop.acc is not None:
        out.append(new[cell.output or cell.states[0]].reshape(loop.acc_value.shape))
    return out


def _reproduces(match: CellMatch, feeds: dict, body: list) -> bool:
    try:
        want = _equations(match, feeds)
    except (ValueError, KeyError, FloatingPointError):
        return False
    return all(compare(w, b, rtol=1e-4) is None for w, b in zip(want, body))


def prove_cell(match: CellMatch, trials: int = 3, seed: int = 0) -> str | None:
    """None if the body's next states (and accumulated output) equal the cell's step on
    random x_t and states; else the reason."""
    loop = match.loop
    tensors, what = _wanted(loop, match.states)

    return check_values(
        loop.body,
        tensors,
        lambda v: _equations(match, v),
        lambda rng: _sample_feeds(loop, match.states, rng),
        trials,
        seed,
        rtol=1e-4,
        what=[f"{w} differs from the {match.cell.name} step" for w in what],
    )


def _sample_feeds(loop: RnnLoop, states: dict, rng: np.random.Generator) -> dict:
    """Random x_t in [-2, 2) and states in [-1, 1)."""
    feeds = {loop.x_t: rng.uniform(-2, 2, loop.x_t.shape).astype(np.float32)}
    for o in states.values():
        feeds[o.arg] = rng.uniform(-1, 1, o.arg.shape).astype(np.float32)
    return feeds


# --------------------------------------------------------------------------- built-in cells


def _lstm(g, s):
    c = sigmoid(g["f"]) * s["c"] + sigmoid(g["i"]) * np.tanh(g["g"])
    return {"h": sigmoid(g["o"]) * np.tanh(c), "c": c}


def _gru(g, s):
    """Keras' GRU with reset_after=True (PyTorch's GRU too): the reset gate r scales the
    recurrent part hn = U_n h + b_hn of the candidate, xn = W_n x + b_xn the input part."""
    z, r = sigmoid(g["z"]), sigmoid(g["r"])
    n = np.tanh(g["xn"] + r * g["hn"])
    return {"h": z * s["h"] + (1 - z) * n}


LSTM = Cell("LSTM", gates=("i", "f", "g", "o"), states=("h", "c"), step=_lstm)
GRU = Cell("GRU", gates=("z", "r", "xn", "hn"), states=("h",), step=_gru)
SIMPLE_RNN = Cell("SimpleRNN", ("a",), ("h",), lambda g, s: {"h": np.tanh(g["a"])})
SIMPLE_RNN_RELU = Cell(
    "SimpleRNN (relu)", ("a",), ("h",), lambda g, s: {"h": np.maximum(g["a"], 0)}
)
