"""Recognise and prove one LSTM step inside a recurrent loop body (see tflgraph.rnn.loops).

The converter writes a Keras LSTM step (gate order i|f|c|o, recurrent activation sigmoid,
activation `act` = tanh or relu) as

    z  = FC(x_t, W[4u, F]) + FC(h, U[4u, u]) + b      # ADDs in any order; the FCs may carry
    i, f, g, o = SPLIT(z, 4, axis=-1)                 # the bias, a RESHAPE may squeeze [1, 4u]
    c' = LOGISTIC(f) * c + LOGISTIC(i) * act(g)
    h' = LOGISTIC(o) * act(c')

`lstm_roles(loop)` finds states h, c and the gate pre-activations i, f, g, o from the data
flow of c' and h'; `match_lstm_cell(loop)` then finds the SPLIT structure and extracts W, U,
b and the activation;
`prove_lstm_cell(loop, cell)` evaluates the body's h' and c' with the reference interpreter on
random inputs and states and compares them with `lstm_step`, the LSTM equations in numpy.
A structural match that the numbers do not confirm is not an LSTM step. A body that is
spelled otherwise (per-gate FULLY_CONNECTED, other gate orders) is recognised by evaluating
it instead: tflgraph.rnn.probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tflgraph.ir import Subgraph
from tflgraph.pattern import Any, Op
from tflgraph.reference.equivalence import check_values
from tflgraph.reference.kernels import ACTIVATIONS, sigmoid
from tflgraph.rnn.cell_terms import affine_terms
from tflgraph.rnn.loops import Operand, RnnLoop, scalar_value

_ACT = ("TANH", "RELU")  # the cell's activation (Keras' `activation`)

# c' = f * c + i * act(g), h' = o * act(c')
C_NEXT = Op(
    "ADD",
    Op("MUL", Op("LOGISTIC", Any("f"), name="sf"), Any("c")),
    Op("MUL", Op("LOGISTIC", Any("i"), name="si"), Op(_ACT, Any("g"), name="act_g")),
    activation="NONE",
)
H_NEXT = Op(
    "MUL",
    Op("LOGISTIC", Any("o"), name="so"),
    Op(_ACT, Any("c_next"), name="act_c"),
    activation="NONE",
)


@dataclass(eq=False)
class LstmCell:
    """One LSTM step of a loop body: which states are h and c, and the cell's parameters."""

    h: Operand
    c: Operand
    W: np.ndarray  # [4u, F], gate blocks i|f|c|o
    U: np.ndarray  # [4u, u]
    b: np.ndarray  # [4u]
    activation: str  # "TANH" or "RELU"

    @property
    def units(self) -> int:
        return int(self.U.shape[1])


def lstm_step(cell: LstmCell, x, h, c):
    """The Keras LSTM equations: returns (h', c')."""
    act = ACTIVATIONS[cell.activation]
    z = x @ cell.W.T + h @ cell.U.T + cell.b
    i, f, g, o = np.split(z, 4, axis=-1)
    c_next = sigmoid(f) * c + sigmoid(i) * act(g)
    return sigmoid(o) * act(c_next), c_next


def lstm_roles(loop: RnnLoop) -> tuple[Operand, Operand, dict] | str:
    """(h, c, captures) of the loop's LSTM step, or why not. The roles come from the data flow
    of c' = f*c + i*act(g) and h' = o*act(c') (C_NEXT, H_NEXT; either operand order): the
    captures name the gate pre-activations "i", "f", "g", "o" and the ops "si", "sf", "so",
    "act_g", "act_c", whatever computes the pre-activations."""
    if len(loop.sequences) != 1 or len(loop.states) != 2:
        masked = " (a mask is read per step: masking is not fused)" * (len(loop.sequences) > 1)
        return (
            f"not an LSTM step: {len(loop.sequences)} sequence(s) and "
            f"{len(loop.states)} state(s), want 1 and 2{masked}"
        )
    reasons: list[str] = []
    for h, c in (loop.states, loop.states[::-1]):
        caps = _match_gates(loop.body, h, c, reasons)
        if caps is not None:
            break
    else:
        return f"not an LSTM step: {reasons[0]}"
    if caps["act_g"].type != caps["act_c"].type:
        return "the cell and output activations differ"
    return h, c, caps


def match_lstm_cell(loop: RnnLoop, explain: Callable[[str], None] | None = None):
    """The LstmCell of the loop's body as the converter spells it (one SPLIT of
    FC(x_t, W) + FC(h, U) + b into i|f|c|o), or None (reason sent to `explain`)."""

    def no(reason: str) -> None:
        if explain is not None:
            explain(f"{loop.name}: {reason}")

    roles = lstm_roles(loop)
    if isinstance(roles, str):
        return no(roles)
    h, c, caps = roles
    body = loop.body
    split = body.producer(caps["i"])
    if (
        split is None
        or split.type != "SPLIT"
        or [caps[k] for k in "ifgo"] != split.outputs
        or scalar_value(split.inputs[0]) not in (-1, len(split.inputs[1].shape) - 1)
    ):
        return no(
            "not an LSTM step: gates i, f, g, o are not SPLIT(z, 4) along the last axis "
            "in that order"
        )
    z = split.inputs[1]
    units = int(caps["i"].shape[-1])
    terms = affine_terms(body, [z], loop.x_t, h.arg)
    if isinstance(terms, str):
        return no(f"not fused: {terms}")
    W, U, bias = terms
    if W.shape[0] != 4 * units or U.shape != (4 * units, units) or W.shape[1] != loop.x_t.shape[-1]:
        return no(f"weight shapes {W.shape} and {U.shape} do not fit {units} units")
    b = np.zeros(4 * units, np.float32)
    for v in bias:
        if v.size not in (1, 4 * units):
            return no(f"a bias of shape {list(v.shape)} is not one value per gate unit")
        b = b + v.astype(np.float32).reshape(-1)
    return LstmCell(h, c, W, U, b, caps["act_g"].type)


def _match_gates(body: Subgraph, h: Operand, c: Operand, reasons: list) -> dict | None:
    caps = {}
    for pattern, t, what in ((H_NEXT, h.next, "h'"), (C_NEXT, c.next, "c'")):
        op = body.producer(t)
        if op is None:
            reasons.append(f"{what} is not computed in the body")
            return None
        got = pattern.match(body, op)
        if got is None:
            why = pattern.why_not(body, op)
            if "LOGISTIC" in why:
                why = f"recurrent activation is not sigmoid (LOGISTIC) ({why})"
            reasons.append(f"{what}: {why}")
            return None
        caps.update(got)
    if caps["c_next"] is not c.next or caps["c"] is not c.arg:
        reasons.append("h' does not read c' or c' does not read c")
        return None
    return caps


def prove_lstm_cell(loop: RnnLoop, cell: LstmCell, trials: int = 3, seed: int = 0) -> str | None:
    """None if the body's h', c' (and the accumulated output) equal `lstm_step` on random
    x, h, c; else the reason."""
    batch = loop.x_t.shape[0]
    want = [cell.h.next, cell.c.next]
    what = ["h'", "c'"]
    if loop.acc is not None:
        want.append(loop.acc_value)
        what.append("the accumulated output")

    def feeds(rng: np.random.Generator) -> dict:
        return {
            loop.x_t: rng.uniform(-2, 2, loop.x_t.shape).astype(np.float32),
            cell.h.arg: rng.uniform(-1, 1, (batch, cell.units)).astype(np.float32),
            cell.c.arg: rng.uniform(-2, 2, (batch, cell.units)).astype(np.float32),
        }

    def equations(v: dict) -> list:
        h, c = lstm_step(cell, v[loop.x_t].astype(np.float64), v[cell.h.arg], v[cell.c.arg])
        return [h, c, h][: len(want)]

    # 1e-4, not the default 1e-5: the reference is the equations in float64, not the same
    # float32 ops reordered, so the body's float32 rounding through the gates and the c'
    # recurrence is measured too
    return check_values(
        loop.body,
        want,
        equations,
        feeds,
        trials,
        seed,
        rtol=1e-4,
        what=[f"{w} differs from the LSTM equations" for w in what],
    )
