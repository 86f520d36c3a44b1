"""static-loop-outputs: WHILE RNNs with a whole-sequence output (or tf_keras' dynamic SPLIT_V)
get static shapes; LiteRT gives the same outputs and TFLM now gives the LiteRT outputs of the
original (which TFLM computed wrongly, hung on, or could not allocate)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    assert_gives_litert_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    outputs_in,
    run,
)
from loop_models import keras_lstm_loop

import tflgraph
from tflgraph.ir import Model


def dynamic_tensors(model: Model) -> list[str]:
    return [
        t.name
        for sg in model.reachable_subgraphs()
        for t in sg.tensors
        if t.is_dynamic and sg.is_used(t)
    ]


# fixture -> (accumulators rewritten, SPLIT_V made static)
REWRITTEN = {
    "k3_gru_seq": (1, 0),  # TFLM hangs on the original
    "k3_simplernn_seq": (1, 0),
    "k3_custom_cell": (1, 0),  # a user-written gated cell, return_sequences=True
    "k3_lstm_seq": (1, 0),  # an LSTM that stays a loop when fuse-lstm is not run
    "tfk_gru_reset_before": (0, 1),  # TFLM cannot allocate the zero-size SPLIT_V output
}


@pytest.mark.parametrize("name", sorted(REWRITTEN))
def test_fixture_gets_static_shapes_and_same_outputs(name):
    model, records = run(name)
    stats = records[0].stats
    assert (stats["accumulators"], stats["split_v"]) == REWRITTEN[name]
    model.check()
    assert dynamic_tensors(model) == []
    if REWRITTEN[name][0]:
        assert "DYNAMIC_UPDATE_SLICE" in model.op_counts()
        assert "CONCATENATION" not in model.op_counts()
    if REWRITTEN[name][1]:
        assert "SPLIT_V" not in model.op_counts()
    original = fixture(name)
    assert_same_outputs(original, model, runtime_names=("litert",))
    assert_gives_litert_reference(original, model, ("tflm",))
    assert tflgraph.to_bytes(model).__len__() <= original.stat().st_size


def test_original_lstm_sequence_is_wrong_in_tflm():
    """What the pass repairs: the input model's TFLM outputs are not LiteRT's."""
    want = outputs_in(fixture("k3_lstm_seq"), "litert", 1)[0][0]
    got = outputs_in(fixture("k3_lstm_seq"), "tflm", 1)[0][0]
    assert np.max(np.abs(want - got)) > 0.1


@pytest.mark.parametrize("name", ["k3_gru_seq", "tfk_gru_reset_before"])
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, ("static-loop-outputs",))


@pytest.mark.parametrize("name", ["k3_gru", "k3_gru_b4", "tfk_gru", "k3_simplernn"])
def test_last_step_loops_are_left_alone(name):
    """return_sequences=False keeps only the last step: already static, nothing to do."""
    _, records = run(name)
    assert not changed(records, "static-loop-outputs")


def test_accumulator_read_inside_the_body_is_left_alone():
    """Near-miss: when the body also reads the accumulator, it is not the append idiom."""
    from tflgraph.rnn import loops

    model = tflgraph.load(fixture("k3_gru_seq"))
    loop = loops.analyze_loop(model.main, model.main.ops_of_type("WHILE")[0])
    body = loop.body
    # h' = h' + 0 * acc[0]: same values, but the accumulator is now read by the cell
    row = body.new_tensor("acc_row", loop.acc_value.shape, "float32")
    idx = body.new_constant(np.zeros((), np.int32), "zero")
    body.add_op("GATHER", [loop.acc.arg, idx], [row], {"axis": 0, "batch_dims": 0})
    zero = body.new_constant(np.zeros((), np.float32), "fzero")
    scaled = body.new_tensor("acc_row_scaled", row.shape, "float32")
    body.add_op("MUL", [row, zero], [scaled], {"fused_activation_function": 0})
    state = loop.states[0]
    new_h = body.new_tensor("h_plus", state.next.shape, "float32")
    body.add_op("ADD", [state.next, scaled], [new_h], {"fused_activation_function": 0})
    body.outputs[state.index] = new_h
    model.check()
    _, records = run(model)
    assert not changed(records, "static-loop-outputs")
    assert "DYNAMIC_UPDATE_SLICE" not in model.op_counts()


def test_body_reading_a_resource_variable_is_left_alone_with_a_reason(tmp_path):
    """The check cannot evaluate a body that reads a resource variable (nothing assigned it
    in the step evaluated alone): the loop is left alone with the reason in --explain; the
    interpreter's EvaluationError used to abort the whole run (exit 2)."""
    from tflgraph.io.schema import TENSOR_TYPES
    from tflgraph.ir import Tensor

    model = tflgraph.load(fixture("k3_simplernn_seq"))
    (while_op,) = model.main.ops_of_type("WHILE")
    body = while_op.subgraphs()[1]
    (tanh,) = body.ops_of_type("TANH")
    (write,) = [op for op in body.consumers(tanh.outputs[0]) if op.type == "RESHAPE"]
    # the accumulator receives h' + bias, bias read from a resource variable
    handle = body.add_tensor(Tensor("bias_var", TENSOR_TYPES["RESOURCE"]))
    body.add_op("VAR_HANDLE", [], [handle], {"container": "", "shared_name": "bias"})
    bias = body.new_tensor("bias", tanh.outputs[0].shape)
    body.add_op("READ_VARIABLE", [handle], [bias])
    biased = body.new_tensor("biased", bias.shape)
    body.add_op("ADD", [tanh.outputs[0], bias], [biased])
    body.set_input(write, 0, biased)
    model.check()
    src, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(tflgraph.to_bytes(model))
    r = subprocess.run(
        [sys.executable, "-m", "tflgraph", "optimize", src, "-o", out,
         "--passes", "static-loop-outputs", "--explain", "--no-verify"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "accumulator not proved equal: cannot check: READ_VARIABLE" in r.stdout
    assert "DYNAMIC_UPDATE_SLICE" not in tflgraph.load(out).op_counts()


def test_split_v_with_a_used_inferred_part_gets_explicit_sizes():
    """SPLIT_V([16, 8, -1]) of 32: the inferred part is 8 and used, so all three stay, as
    SPLIT_V with constant sizes [16, 8, 8]; values identical in both runtimes."""
    m = Model()
    sg = m.add_subgraph("main")
    x = sg.new_tensor("x", (1, 32))
    outs = [sg.new_tensor(f"y{i}", (1, n)) for i, n in enumerate((16, 8, 8))]
    sizes = sg.new_constant(np.array([16, 8, -1], np.int32), "sizes")
    axis = sg.new_constant(np.array(-1, np.int32), "axis")
    sg.add_op("SPLIT_V", [x, sizes, axis], outs, {"num_splits": 3})
    sg.inputs, sg.outputs = [x], outs
    original = tflgraph.to_bytes(m)
    _, records = run(m)
    assert records[0].stats["split_v"] == 1
    (op,) = m.main.ops_of_type("SPLIT_V")
    assert op.inputs[1].data.tolist() == [16, 8, 8]
    assert [t.name for t in m.main.outputs] == ["y0", "y1", "y2"]
    assert_same_outputs(original, m, exact=True)


@pytest.mark.parametrize("steps, batch", [(10, 4), (7, 3), (1, 2)])
def test_synthetic_batch_sequence_loops(steps, batch):
    """return_sequences with batch > 1 (TRANSPOSE in and out), not among the fixtures: the
    Keras-3 style loop builder of the benchmarks, kept a loop (no fuse-lstm)."""
    data = keras_lstm_loop(steps, 5, 6, batch=batch, sequences=True)
    model, records = run(tflgraph.load(data))
    assert records[0].stats["accumulators"] == 1
    assert dynamic_tensors(model) == []
    assert_same_outputs(data, model, runtime_names=("litert",))
    assert_gives_litert_reference(data, model, ("tflm",))


def test_a_loop_body_with_hybrid_layers_gets_a_static_accumulator():
    """Dynamic-range models keep int8 weights (float activations) in the body: the proof
    computes them as floats on both sides, and LiteRT's hybrid kernels give identical outputs
    before and after, as the rewrite only moves rows."""
    original = tflgraph.load(keras_lstm_loop(steps=6, features=4, units=8, sequences=True))
    body = original.subgraphs[2]
    for fc in body.ops_of_type("FULLY_CONNECTED"):
        w = fc.inputs[1].data
        scale = float(np.abs(w).max()) / 127
        q = np.round(w / scale).astype(np.int8)
        body.set_input(
            fc,
            1,
            body.new_constant(
                q, f"{fc.inputs[1].name}_int8", {"scale": [scale], "zero_point": [0]}
            ),
        )
    model, records = run(tflgraph.load(tflgraph.to_bytes(original)), ["static-loop-outputs"])
    assert changed(records, "static-loop-outputs") and not dynamic_tensors(model)
    assert_same_outputs(original, model, runtime_names=("litert",), exact=True)
