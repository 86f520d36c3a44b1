"""fuse-simple-rnn: SimpleRNN loops -> UNIDIRECTIONAL_SEQUENCE_RNN for --target litert only;
outputs equal in LiteRT invoke after invoke without reset (the fused op's variable hidden
state is re-written every invoke); other targets and other cells are left alone."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    outputs_in,
    run,
)

import tflgraph
from tflgraph.pipeline import run_passes

FUSE = ("fuse-simple-rnn", "static-loop-outputs", "cleanup")


@pytest.mark.parametrize("name", ["k3_simplernn", "k3_simplernn_relu", "k3_simplernn_seq"])
def test_simple_rnn_is_fused_for_litert(name):
    model, records = run(name, FUSE, target="litert")
    ops = model.op_counts()
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_RNN") == 1 and "WHILE" not in ops
    assert len(model.subgraphs) == 1
    model.check()
    (rnn,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_RNN")
    act = rnn.options["fused_activation_function"]
    assert act == (1 if name.endswith("relu") else 4)
    # operand 4 is a variable tensor that an op re-writes at the start of every invoke
    state = rnn.inputs[4]
    assert state.is_variable and model.main.producer(state).type == "FILL"
    assert_same_outputs(fixture(name), model, runtime_names=("litert",))
    assert len(tflgraph.to_bytes(model)) <= fixture(name).stat().st_size


def test_without_the_reset_op_state_would_carry_over():
    """The test above can fail: with the FILL removed, the state carries across invokes."""
    model, _ = run("k3_simplernn", FUSE, target="litert")
    (rnn,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_RNN")
    fill = model.main.producer(rnn.inputs[4])
    orphan = model.main.new_tensor("h_state", rnn.inputs[4].shape, is_variable=True)
    model.main.set_input(rnn, 4, orphan)
    model.main.remove_op(fill)
    want = outputs_in(fixture("k3_simplernn"), "litert", 2)
    got = outputs_in(model, "litert", 2)
    assert np.allclose(want[0][0], got[0][0], atol=1e-5)  # first invoke starts from zeros
    assert not np.allclose(want[1][0], got[1][0], atol=1e-3)  # the second does not


@pytest.mark.parametrize("target", ["any", "tflm"])
def test_not_fused_where_tflm_must_run_it(target):
    _, records = run("k3_simplernn", FUSE, target=target)
    assert not changed(records, "fuse-simple-rnn")
    assert any(
        "no UNIDIRECTIONAL_SEQUENCE_RNN kernel" in e for r in records for e in r.explanations
    )


@pytest.mark.parametrize("name", ["k3_gru", "k3_custom_cell", "k3_lstm_hardsig"])
def test_other_cells_are_left_alone(name):
    _, records = run(name, ("fuse-simple-rnn",), target="litert")
    assert not changed(records, "fuse-simple-rnn")


def test_a_different_activation_is_left_alone():
    """Near-miss: SimpleRNN with the TANH swapped for LOGISTIC is not a fusable cell."""
    model = tflgraph.load(fixture("k3_simplernn"))
    (op,) = model.main.ops_of_type("WHILE")
    body = op.options["body_subgraph_index"]
    (tanh,) = body.ops_of_type("TANH")
    tanh.opcode = tflgraph.io.schema.OP_CODES["LOGISTIC"]
    _, records = run(model, ("fuse-simple-rnn",), target="litert")
    assert not changed(records, "fuse-simple-rnn")


def test_second_run_changes_nothing():
    assert_second_run_changes_nothing("k3_simplernn_seq", FUSE, "litert")


def test_fused_after_static_loop_outputs_too():
    """The pass order does not matter: the DYNAMIC_UPDATE_SLICE accumulator is recognised."""
    model, records = run("k3_simplernn_seq", ("static-loop-outputs", "fuse-simple-rnn"), "litert")
    assert changed(records, "static-loop-outputs") and changed(records, "fuse-simple-rnn")
    assert model.op_counts() == {"FILL": 1, "UNIDIRECTIONAL_SEQUENCE_RNN": 1}
    assert_same_outputs(fixture("k3_simplernn_seq"), model, runtime_names=("litert",))


def _recurrent_fc_scaled(model):
    """k3_simplernn with FC(h, R) spelled MUL(FC(h, 2 R), 0.5): the same step, which the
    structural matcher refuses (a MUL term) and evaluation recognises."""
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    fc = next(op for op in body.ops_of_type("FULLY_CONNECTED") if op.inputs[0] in body.inputs)
    body.set_input(fc, 1, body.new_constant(2 * fc.inputs[1].data, "R2"))
    half = body.new_constant(np.array(0.5, np.float32), "half")
    (add,) = body.consumers(fc.outputs[0])
    out = body.new_tensor("recurrent", fc.outputs[0].shape)
    body.add_op("MUL", [fc.outputs[0], half], [out], {})
    body.set_input(add, list(add.inputs).index(fc.outputs[0]), out)
    return model


def test_a_step_spelled_otherwise_is_recognised_by_evaluation_and_fused():
    original = tflgraph.to_bytes(_recurrent_fc_scaled(tflgraph.load(fixture("k3_simplernn"))))
    model = tflgraph.load(original)
    records = run_passes(model, FUSE, explain=True, target="litert")
    said = [e for r in records for e in r.explanations]
    assert any("SimpleRNN step (tanh) recognised by evaluation" in e for e in said), said
    assert model.op_counts().get("UNIDIRECTIONAL_SEQUENCE_RNN") == 1
    assert "WHILE" not in model.op_counts()
    assert_same_outputs(original, model, runtime_names=("litert",))
    for target in ("tflm", "any"):  # no fused SimpleRNN kernel in TFLM: no probing either
        _, records = run(tflgraph.load(original), ("fuse-simple-rnn",), target=target)
        assert not changed(records, "fuse-simple-rnn")
