"""fuse-lstm's second recogniser (tflgraph.rnn.probe): an LSTM step spelled otherwise than the
converter's SPLIT form is recognised by evaluating its gate pre-activations; a gate that is not
affine in (x_t, h), or that reads c, leaves the loop alone with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_gives_tf_reference, assert_same_outputs, fixture

import tflgraph
from tflgraph.pipeline import run_passes
from tflgraph.rnn.loops import analyze_loop, while_loops
from tflgraph.rnn.lstm_cell import lstm_roles, match_lstm_cell
from tflgraph.rnn.probe import probe_lstm_cell

DROPOUT = "k3_lstm_dropout"  # four FULLY_CONNECTED per side, one per gate, no SPLIT
# (tfk_lstm_dropout, tf_keras' form, too; without the seed generator)


def fuse(model, target="any"):
    passes = ["fuse-lstm", "drop-dead-variables", "cleanup"]
    records = run_passes(model, passes, check_each=True, explain=True, target=target)
    return model, [e for r in records for e in r.explanations]


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
@pytest.mark.parametrize("name", [DROPOUT, "tfk_lstm_dropout"])
def test_dropout_lstm_is_recognised_by_evaluation_and_fused(name, target):
    model, why = fuse(tflgraph.load(fixture(name)), target)
    ops = model.op_counts()
    assert "WHILE" not in ops and ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert any("recognised by evaluation" in w and "not SPLIT(z, 4)" in w for w in why), why
    data = tflgraph.to_bytes(model)
    assert_same_outputs(fixture(name), data, ("litert",))
    again = tflgraph.load(data)
    assert not any(r.changed for r in run_passes(again, ["fuse-lstm"]))
    # TFLM cannot run the Keras 3 original (its seed-generator variable): once
    # drop-dead-variables removed that, the fused model gives Keras' outputs in both runtimes
    assert set(ops) == {"FILL", "STRIDED_SLICE", "UNIDIRECTIONAL_SEQUENCE_LSTM"}
    assert_gives_tf_reference(data, name, ("litert", "tflm"))


@pytest.mark.parametrize("name", ["k3_lstm", "k3_lstm_b4", "tfk_lstm_nobias"])
def test_probe_reads_the_weights_the_structural_matcher_reads(name):
    model = tflgraph.load(fixture(name))
    loop = analyze_loop(model.main, while_loops(model.main)[0])
    want, got = match_lstm_cell(loop), probe_lstm_cell(loop)
    assert (got.h, got.c, got.activation) == (want.h, want.c, want.activation)
    for a, b in ((want.W, got.W), (want.U, got.U), (want.b, got.b)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def _forget_gate(model):
    """(body, LOGISTIC op of the forget gate, c) of the fixture's loop: f multiplies c."""
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    (f_times_c,) = [
        op for op in body.ops_of_type("MUL") if any(t in body.inputs for t in op.inputs)
    ]
    c = next(t for t in f_times_c.inputs if t in body.inputs)
    sf = body.producer(next(t for t in f_times_c.inputs if t is not c))
    assert sf.type == "LOGISTIC"
    return body, sf, c


def _near_miss(extra_term):
    """k3_lstm_dropout with the forget gate's pre-activation p replaced by extra_term(...)."""
    model = tflgraph.load(fixture(DROPOUT))
    body, sf, c = _forget_gate(model)
    p = sf.inputs[0]
    bent = body.new_tensor("bent", p.shape)
    extra_term(body, p, c, bent)
    body.set_input(sf, 0, bent)
    return model


@pytest.mark.parametrize(
    "extra_term, reason",
    [
        (lambda body, p, c, out: body.add_op("TANH", [p], [out]),
         "by evaluation: the gates are not affine in (x_t, h)"),
        (lambda body, p, c, out: body.add_op("ADD", [p, c], [out], {}),
         "by evaluation: gate f reads the cell state c (a peephole-like term)"),
    ],
)  # fmt: skip
def test_near_misses_stay_loops_with_a_reason(extra_term, reason):
    model, why = fuse(_near_miss(extra_term))
    ops = model.op_counts()
    assert ops["WHILE"] == 1 and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert any(reason in w for w in why), why


def test_gate_order_comes_out_of_the_numbers():
    """k3_lstm with its first two SPLIT outputs swapped (gate order f|i|c|o, as another
    converter might lay it out) is still an LSTM: fused, the W blocks swapped back."""
    model = tflgraph.load(fixture("k3_lstm"))
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    (split,) = body.ops_of_type("SPLIT")
    (si,), (sf,) = (body.consumers(t) for t in split.outputs[:2])
    body.set_input(si, 0, split.outputs[1])
    body.set_input(sf, 0, split.outputs[0])
    original = tflgraph.to_bytes(model)
    loop = analyze_loop(model.main, while_loops(model.main)[0])
    keras = match_lstm_cell(analyze_loop(*_k3_lstm_loop()))
    u = keras.units
    np.testing.assert_allclose(
        probe_lstm_cell(loop).W,
        np.concatenate([keras.W[u : 2 * u], keras.W[:u], keras.W[2 * u :]]),
        atol=1e-6,
    )
    model, why = fuse(model)
    assert (
        model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "WHILE" not in model.op_counts()
    )
    assert any("recognised by evaluation" in w for w in why), why
    assert_same_outputs(original, model, ("litert", "tflm"))


def _k3_lstm_loop():
    model = tflgraph.load(fixture("k3_lstm"))
    return model.main, while_loops(model.main)[0]


def test_final_cell_state_read_apart_from_the_output_stays_a_loop():
    """Near-miss after the step: the final c feeds an op that does not depend on the loop's
    output, so it would read the fused op's in-place c before the op has run."""
    model = tflgraph.load(fixture(DROPOUT))
    sg = model.main
    loop = analyze_loop(sg, while_loops(sg)[0])
    c = probe_lstm_cell(loop).c
    c_plus = sg.new_tensor("c_plus", c.result.shape)
    sg.add_op("ADD", [c.result, sg.new_constant(np.float32(1.0), "one")], [c_plus], {})
    sg.outputs.append(c_plus)
    model, why = fuse(model)
    assert "WHILE" in model.op_counts() and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in model.op_counts()
    assert any("the final cell state c feeds an op that does not also depend" in w for w in why)


@pytest.mark.parametrize("name", ["k3_gru", "tfk_gru", "k3_gru_b4"])
def test_a_gru_is_named_as_such_and_stays_a_loop(name):
    model, why = fuse(tflgraph.load(fixture(name)))
    assert model.op_counts()["WHILE"] == 1
    assert any("a GRU step (recognised by evaluation): no fused GRU op" in w for w in why), why
    _, why = fuse(tflgraph.load(fixture("k3_gru_reset_before")))  # its candidate reads r * h
    assert not any("a GRU step" in w for w in why), why


def _sigmoid_as_tanh(model):
    """k3_lstm whose forget gate's LOGISTIC(p) is spelled 0.5 * TANH(0.5 * p) + 0.5: the same
    numbers, but c' = f * c + i * g no longer has the ops the roles are found by."""
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    loop = analyze_loop(model.main, while_loops(model.main)[0])
    _, _, gates = lstm_roles(loop)
    sf, half = gates["sf"], body.new_constant(np.array(0.5, np.float32), "half")
    steps = [("MUL", [sf.inputs[0], half]), ("TANH", []), ("MUL", [half]), ("ADD", [half])]
    t = None
    for op_type, operands in steps:
        out = body.new_tensor(f"sigmoid_{len(body.operators)}", sf.outputs[0].shape)
        body.add_op(op_type, ([t] if t is not None else []) + operands, [out])
        t = out
    body.replace_all_uses(sf.outputs[0], t)
    return model


def test_a_gate_spelled_otherwise_is_recognised_by_the_whole_step():
    model = _sigmoid_as_tanh(tflgraph.load(fixture("k3_lstm")))
    original = tflgraph.to_bytes(model)
    for target in ("tflm", "litert"):
        model, why = fuse(tflgraph.load(original), target)
        ops = model.op_counts()
        assert "WHILE" not in ops and ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
        assert any("recognised by evaluating the whole step" in w for w in why), why
        data = tflgraph.to_bytes(model)
        assert_same_outputs(original, data, ("litert", "tflm"))
    _, why = fuse(tflgraph.load(fixture("k3_lstm_hardsig")))  # another function: a loop
    assert any("no order of the 4 affine terms as gates i, f, g, o" in w for w in why), why
