"""Recognise an LSTM step by evaluating it, however the converter spelled its gates.

`lstm_roles` (tflgraph.rnn.lstm_cell) names the gate pre-activations by their role in the data
flow: i and g feed c' = f*c + i*act(g) through a sigmoid and the activation, f multiplies c,
o multiplies act(c'). Each pre-activation must then be affine in (x_t, h):

    pre(x, h) = W x + U h + b

so the reference interpreter reads the numbers off the body, F + u + 1 evaluations in all:
x = h = 0 gives b, a unit vector e_k in x gives column k of W (minus b), one in h a column
of U. A random (x, h) checks that the map is affine, and `prove_lstm_cell` then proves the
whole step (h', c' and the accumulated output) against the LSTM equations on random x, h, c.
Split, merged, transposed or per-gate weights, biases split or folded and any gate order give
the same LstmCell, so the fused rewrite is the one of the structural matcher.

`read_affine` (the evaluations) and `Affine` (one map) serve tflgraph.rnn.cells too, which
finds the gate pre-activations of any described cell without naming their roles first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Tensor
from tflgraph.reference.equivalence import compare
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.rnn.loops import RnnLoop
from tflgraph.rnn.lstm_cell import LstmCell, lstm_roles

_GATES = "ifgo"  # the Keras order of the gate blocks in W, U and b


def probe_lstm_cell(loop: RnnLoop, explain: Callable[[str], None] | None = None):
    """The LstmCell of the loop's body read off by evaluation, or None (reason to `explain`).
    The cell is not proven yet: the caller runs prove_lstm_cell as for a structural match."""

    def no(reason: str) -> None:
        if explain is not None:
            explain(f"{loop.name}: by evaluation: {reason}")

    roles = lstm_roles(loop)
    if isinstance(roles, str):
        return no(roles)
    h, c, caps = roles
    pre = [caps[k] for k in _GATES]
    for gate, t in zip(_GATES, pre):
        if c.arg is t or c.arg in nx.ancestors(loop.body.graph, t):
            return no(f"gate {gate} reads the cell state c (a peephole-like term)")
    batch, units = loop.x_t.shape[0], int(h.arg.shape[-1])
    if any(int(np.prod(t.shape)) != batch * units for t in pre) or h.arg.shape != c.arg.shape:
        return no(f"a gate pre-activation is not [batch, units] = {[batch, units]}")
    got = _affine_maps(loop, h.arg, pre)
    if isinstance(got, str):
        return no(got)
    W, U, b = got
    return LstmCell(h, c, W, U, b, caps["act_g"].type)


def _affine_maps(loop: RnnLoop, h, pre: list):
    """(W[4u, F], U[4u, u], b[4u]) with pre(x, h) = W x + U h + b for the concatenated gate
    pre-activations `pre`, or why not (not affine, or not computable from x_t and h)."""
    got = read_affine(loop, h, pre)
    if isinstance(got, str):
        return got
    maps, (x, hv, values) = got
    W, U, b = (np.concatenate([getattr(m, k) for m in maps]) for k in "WUb")
    # 1e-4 as in prove_lstm_cell: the reference is float64, the body float32
    why = compare(
        W @ x + U @ hv + b, np.concatenate(values), rtol=1e-4, what="a gate pre-activation"
    )
    if why:
        return f"the gates are not affine in (x_t, h): {why}"
    return W, U, b


@dataclass(eq=False)
class Affine:
    """A gate pre-activation pre(x, h) = W x + U h + b of one batch row: W [k, F], U [k, u],
    b [k]. Called on rows x [rows, F], h [rows, u], it gives [rows, k]."""

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray

    def __call__(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        return x @ self.W.T + h @ self.U.T + self.b

    def block(self, k: int, width: int) -> Affine:
        """Rows k * width .. (k + 1) * width: one gate of a merged pre-activation."""
        rows = slice(k * width, (k + 1) * width)
        return Affine(self.W[rows], self.U[rows], self.b[rows])


def read_affine(loop: RnnLoop, h: Tensor, tensors: list[Tensor]):
    """The affine maps of `tensors` in (x_t, h), read off the body as if each were affine,
    F + u + 1 evaluations in all (every row fed the same x and h, row 0 read), and the check
    the caller makes: (x, h, values) at a random point, where each map must give its value.
    Or why the tensors are not computable from x_t and h alone."""
    batch = loop.x_t.shape[0]
    features, units = int(loop.x_t.shape[-1]), int(np.prod(h.shape)) // batch

    def at(x: np.ndarray, hv: np.ndarray) -> list[np.ndarray]:
        feeds = {
            loop.x_t: np.broadcast_to(x, loop.x_t.shape).astype(np.float32),
            h: np.broadcast_to(hv, (batch, units)).reshape(h.shape).astype(np.float32),
        }
        values = evaluate_tensors(loop.body, feeds, tensors)
        return [np.reshape(v, (batch, -1))[0] for v in values]

    zx, zh = np.zeros(features, np.float32), np.zeros(units, np.float32)
    eye_x, eye_h = np.eye(features, dtype=np.float32), np.eye(units, dtype=np.float32)
    try:
        b = at(zx, zh)
        cols_x = [at(e, zh) for e in eye_x]
        cols_h = [at(zx, e) for e in eye_h]
        rng = np.random.default_rng(0)
        x, hv = rng.uniform(-2, 2, features), rng.uniform(-1, 1, units)
        got = at(x, hv)
    except (TflgraphError, ValueError) as e:
        return f"the gate pre-activations are not computable from x_t and h alone ({e})"
    maps = [
        Affine(
            np.stack([c[j] - b[j] for c in cols_x], axis=1),
            np.stack([c[j] - b[j] for c in cols_h], axis=1),
            b[j],
        )
        for j in range(len(tensors))
    ]
    return maps, (x, hv, got)
