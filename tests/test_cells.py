"""A cell described once (tflgraph.rnn.cells) is found in the loops that compute it, however the
converter spelled them: the weights read off by evaluation reproduce Keras' and onnxruntime's
stored outputs, and loops computing something else are refused with a reason. The README's
example runs as written."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from helpers import ROOT, assert_equal_values, fixture, tf_reference

import tflgraph
from tflgraph.reference.interpreter import evaluate
from tflgraph.rnn.cells import GRU, LSTM, SIMPLE_RNN, Cell, find_cells, prove_cell, sigmoid
from tflgraph.rnn.loops import analyze_loop, while_loops
from tflgraph.rnn.lstm_cell import lstm_roles, match_lstm_cell


def minimal_gated(g, s):
    z = sigmoid(g["z"])
    return {"h": z * s["h"] + (1 - z) * np.tanh(g["n"])}


MINIMAL = Cell("minimal-gated", gates=("z", "n"), states=("h",), step=minimal_gated)


def matches(name_or_model, cell):
    model = (
        tflgraph.load(fixture(name_or_model)) if isinstance(name_or_model, str) else name_or_model
    )
    why: list[str] = []
    return list(find_cells(model, cell, why.append)), why


@pytest.mark.parametrize("name", ["k3_lstm", "k3_lstm_b4", "tfk_rnn_lstmcell"])
def test_lstm_weights_are_the_structural_matchers(name):
    (match,), _ = matches(name, LSTM)
    model = tflgraph.load(fixture(name))
    want = match_lstm_cell(analyze_loop(model.main, while_loops(model.main)[0]))
    assert (match.states["h"].index, match.states["c"].index) == (want.h.index, want.c.index)
    for k in "WUb":
        got = np.concatenate([getattr(match.gates[g], k) for g in "ifgo"])
        np.testing.assert_allclose(got, getattr(want, k), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name, cell, loops",
    [
        ("onnx_bilstm_onnx2tf", LSTM, 2),  # ONNX gate order, biases added per gate
        ("k3_lstm_dropout", LSTM, 1),  # four FULLY_CONNECTED per side
        ("k3_gru_flex_bnone", GRU, 1),  # Keras 3 GRU, reset_after=True
        ("onnx_gru_onnx2tf", GRU, 1),  # PyTorch's GRU: the bias b_xn added after r * hn
        ("k2_gru_seq_flex_bnone_tf215", GRU, 1),  # Keras 2 GRU in its DYNAMIC_UPDATE_SLICE loop
    ],
)
def test_found_cells_reproduce_the_frameworks_outputs(name, cell, loops):
    """The maps read off the loop, run as the cell's equations in numpy, give the stored
    Keras / onnxruntime outputs: the gate order and every weight came out right."""
    model = tflgraph.load(fixture(name))
    tflgraph.optimize(model, ["freeze-shapes", "fold-constants", "lower-tensor-lists"])
    found, why = matches(model, cell)
    assert len(found) == loops, why
    (x,), want = tf_reference(name)
    match = found[0]  # the forward direction
    y = match.unroll(x).astype(np.float32)
    u = match.units
    ref = want[0][..., :u] if loops == 2 else want[0]
    assert_equal_values(ref, y if ref.ndim == 3 else y[:, -1])


def test_a_user_cell_reproduces_its_loop():
    """k3_custom_cell is a Keras RNN(MinimalGatedCell): the described cell is found, and its
    equations give the model's outputs; the built-in cells are refused with a reason."""
    (match,), _ = matches("k3_custom_cell", MINIMAL)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 10, 8)).astype(np.float32)
    (want,) = evaluate(tflgraph.load(fixture("k3_custom_cell")), [x])
    assert_equal_values(want, match.unroll(x).astype(np.float32))
    found, why = matches("k3_custom_cell", GRU)
    assert (
        not found and "2 gate pre-activation(s) affine in (x_t, h) found, the cell has 4" in why[0]
    )
    found, why = matches("k3_custom_cell", SIMPLE_RNN)
    assert not found and "no order of the 2 affine terms as gates a" in why[0], why


@pytest.mark.parametrize(
    "name, cell, reason",
    [
        # the candidate reads r * h: U (r h) is not affine in (x_t, h)
        ("k3_gru_reset_before", GRU, "a gate is not affine in (x_t, h)"),
        ("k3_gru", MINIMAL, "no order of the 4 affine terms as gates z, n"),
        ("k3_lstm", GRU, "1 sequence(s) and 2 state(s), the cell reads 1 and has 1"),
    ],
)
def test_other_cells_are_refused_with_a_reason(name, cell, reason):
    found, why = matches(name, cell)
    assert not found and reason in why[0], why


def test_a_peephole_like_term_is_refused():
    """k3_lstm whose forget gate also adds c: the four gates read off (x_t, h) no longer give
    the body's c' in any order."""
    model = tflgraph.load(fixture("k3_lstm"))
    loop = analyze_loop(model.main, while_loops(model.main)[0])
    body, (_, c, gates) = loop.body, lstm_roles(loop)
    f = gates["f"]
    bent = body.new_tensor("bent", f.shape)
    body.add_op("ADD", [f, c.arg], [bent], {})
    body.set_input(gates["sf"], 0, bent)
    found, why = matches(model, LSTM)
    assert not found and "no order of the 4 affine terms as gates i, f, g, o" in why[0], why


def test_prove_cell_refuses_a_wrong_weight():
    (match,), _ = matches("k3_gru", GRU)
    assert prove_cell(match) is None
    match.gates["r"].b = match.gates["r"].b + 0.01
    assert "next h differs from the GRU step" in prove_cell(match)


def test_readme_example_runs_as_written(monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = text.split("## Describe your own recurrent cell")[1].split("```python")[1]
    code = block.split("```")[0]
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    expected = next(line[2:] for line in code.splitlines() if line.startswith("# WHILE"))
    assert out.getvalue().strip() == expected
