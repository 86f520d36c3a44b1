"""Fuse a WHILE loop computing one SimpleRNN step into UNIDIRECTIONAL_SEQUENCE_RNN.

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops) with one sequence and one state h whose
           body computes h' = act(FC(x_t, W) + FC(h, R) + constants), act TANH or RELU (as
           an op, or fused into the last ADD), and accumulates h' (last step or sequence).
           Only where the target runs the fused op: LiteRT has it, TFLM has no kernel, so
           the pass runs for `--target litert` only.
Rewrite:   h0v = FILL([B, u], 0.0)                  # or RESHAPE(h0) for a non-zero state
           y = UNIDIRECTIONAL_SEQUENCE_RNN(x, W, R, b, h0v, time_major, act)
           readers of the loop move onto y exactly as for fuse-lstm (tflgraph.rnn.rewrite):
           acc[-1] and the final h -> STRIDED_SLICE(y)[last step]; the sequence -> y.
Proof:     W, R, b are read from the body's FULLY_CONNECTED and ADD ops, or, for a body
           spelled otherwise, by evaluating it (tflgraph.rnn.cells: the SimpleRNN cell with
           tanh or relu, found by evaluation); the body's h' (and
           accumulated value) are evaluated with the reference interpreter on random x, h
           and compared with act(x W^T + h R^T + b); any mismatch leaves the loop alone.
Invariant: outputs equal the loop's within 1e-5, invoke after invoke without reset: the fused
           op keeps h in a variable tensor across invokes, so h0v is an op output re-written
           at the start of every invoke (the fuse-lstm rule); the model stays stateless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tflgraph.io.schema import ACTIVATION_CODES, new_options
from tflgraph.ir import Model, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import check_values
from tflgraph.reference.kernels import ACTIVATIONS
from tflgraph.rnn import loops
from tflgraph.rnn.cell_terms import affine_terms
from tflgraph.rnn.cells import SIMPLE_RNN, SIMPLE_RNN_RELU, match_cell
from tflgraph.rnn.rewrite import FusedRnnRewrite, last_step_read_only
from tflgraph.runtime.targets import supports


@dataclass(eq=False)
class RnnCell:
    """One SimpleRNN step: h' = act(x W^T + h R^T + b). `c` is `h` (no cell state), so the
    shared reader-moving code (tflgraph.rnn.rewrite) finds nothing more to move for it."""

    h: loops.Operand
    W: np.ndarray  # [u, F]
    R: np.ndarray  # [u, u]
    b: np.ndarray  # [u]
    activation: str  # "TANH" or "RELU"

    @property
    def c(self) -> loops.Operand:
        return self.h

    @property
    def units(self) -> int:
        return int(self.R.shape[0])


@register("fuse-simple-rnn")
class FuseSimpleRnn(Pass):
    """Fuse WHILE-loop SimpleRNNs into UNIDIRECTIONAL_SEQUENCE_RNN (LiteRT targets only)."""

    def run(self, model: Model) -> bool:
        fused = 0
        for loop in loops.rnn_loops(model, self.explain):
            loop = loops.with_static_accumulator(loop)  # also after static-loop-outputs
            cell = match_rnn_cell(loop)
            if cell is None and supports(self.target, "UNIDIRECTIONAL_SEQUENCE_RNN"):
                cell = probe_rnn_cell(loop, self.explain)
            if cell is None:
                continue
            if not supports(self.target, "UNIDIRECTIONAL_SEQUENCE_RNN"):
                self.explain(
                    f"{loop.name}: a SimpleRNN, left a loop: target {self.target} has no "
                    "UNIDIRECTIONAL_SEQUENCE_RNN kernel (TFLM lacks it; use --target litert)"
                )
                continue
            why = _unsupported_use(loop) or prove_rnn_cell(loop, cell)
            if why:
                self.explain(f"{loop.name}: left alone: {why}")
                continue
            _RnnRewrite(loop, cell, False).apply()
            fused += 1
        self.stats = {"loops_fused": fused}
        return bool(fused)


def match_rnn_cell(loop: loops.RnnLoop) -> RnnCell | None:
    if len(loop.states) != 1 or len(loop.sequences) != 1:
        return None
    h = loop.states[0]
    p = loop.body.producer(h.next)
    if p is None:
        return None
    if p.type in ("TANH", "RELU"):
        act, terms = p.type, [p.inputs[0]]
    elif p.type == "ADD" and p.activation in ("TANH", "RELU"):
        act, terms = p.activation, list(p.inputs)
    else:
        return None
    sizes = (1, h.arg.shape[-1])  # a constant term is one value or one per unit
    found = affine_terms(loop.body, terms, loop.x_t, h.arg, const_sizes=sizes, squeeze=False)
    if isinstance(found, str) or found[1].shape[0] != found[1].shape[1]:  # R is [u, u]
        return None
    W, R, bias = found
    b = np.zeros(R.shape[0], np.float32)
    for c in bias:
        b = b + np.broadcast_to(c.reshape(-1), b.shape)
    return RnnCell(h, W, R, b.astype(np.float32), act)


def probe_rnn_cell(loop: loops.RnnLoop, explain) -> RnnCell | None:
    """The SimpleRNN step of a body spelled otherwise than FC + FC + bias, read off by
    evaluation (tflgraph.rnn.cells), or None. Only loops of one sequence and one state whose
    h' comes out of TANH or RELU (an op, or fused into the op computing h'): other cells
    (a GRU's h' is a sum of products) cost no evaluation."""
    if len(loop.states) != 1 or len(loop.sequences) != 1:
        return None
    h = loop.states[0]
    p = loop.body.producer(h.next)
    act = p.type if p is not None and p.type in _CELLS else getattr(p, "activation", None)
    if act not in _CELLS:
        return None
    match = match_cell(loop, _CELLS[act])
    if match is None:
        return None
    explain(f"{loop.name}: SimpleRNN step ({act.lower()}) recognised by evaluation")
    a = match.gates["a"]
    return RnnCell(h, a.W, a.U, a.b.astype(np.float32), act)


_CELLS = {"TANH": SIMPLE_RNN, "RELU": SIMPLE_RNN_RELU}


def _unsupported_use(loop: loops.RnnLoop) -> str | None:
    sg, h = loop.sg, loop.states[0]
    if any(sg.is_used(c.result) for c in loop.counters):
        return "a loop counter is read after the loop"
    if loop.seq.init.type_name != "FLOAT32" or h.init.type_name != "FLOAT32":
        return "not float32"
    if loop.seq.init.shape[0] != loop.trip_count or loop.seq.init.is_dynamic:
        return "the loop does not run over the whole (static) sequence"
    if h.init.is_variable:
        return "the initial state is a variable tensor"
    if any(sg.is_used(o.result) for o in loop.invariants):
        return "a loop invariant is read after the loop"
    if not last_step_read_only(loop):
        return "the last-step accumulator is read other than as acc[-1]"
    return None


def prove_rnn_cell(loop: loops.RnnLoop, cell: RnnCell, trials: int = 3) -> str | None:
    """None if the body's h' (and accumulated value) equal the SimpleRNN step on random x, h."""
    want = [cell.h.next] + ([loop.acc_value] if loop.acc is not None else [])

    def feeds(rng: np.random.Generator) -> dict:
        return {
            loop.x_t: rng.uniform(-2, 2, loop.x_t.shape).astype(np.float32),
            cell.h.arg: rng.uniform(-1, 1, cell.h.arg.shape).astype(np.float32),
        }

    def step(v: dict) -> list:
        z = v[loop.x_t].astype(np.float64) @ cell.W.T + v[cell.h.arg] @ cell.R.T + cell.b
        return [ACTIVATIONS[cell.activation](z)] * len(want)

    what = ["h' differs from the SimpleRNN step"] * len(want)
    return check_values(loop.body, want, step, feeds, trials, what=what)


class _RnnRewrite(FusedRnnRewrite):
    """UNIDIRECTIONAL_SEQUENCE_RNN for one proven loop (tflgraph.rnn.rewrite does the rest)."""

    op_type, suffix, reverses = "UNIDIRECTIONAL_SEQUENCE_RNN", "rnn", False

    def operands(self, x: Tensor) -> tuple[list[Tensor | None], dict]:
        cell = self.cell
        weights = [self.const(a, n) for a, n in ((cell.W, "W"), (cell.R, "R"), (cell.b, "b"))]
        h_var = self.state(cell.h.init, "h")
        options = new_options(
            "SequenceRNNOptions",
            time_major=self.time_major,
            fused_activation_function=ACTIVATION_CODES[cell.activation],
        )
        return [x, *weights, h_var], options
