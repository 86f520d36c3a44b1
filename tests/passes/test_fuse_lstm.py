"""fuse-lstm: WHILE-loop LSTMs become UNIDIRECTIONAL_SEQUENCE_LSTM with the same outputs,
invoke after invoke without reset, in LiteRT and TFLM; near-misses are left alone."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_gives_litert_reference, assert_same_outputs, fixture, outputs_in
from loop_models import keras_lstm_loop

import tflgraph
from tflgraph import cli
from tflgraph.io.schema import OP_CODES
from tflgraph.pipeline import run_passes

# fixture -> fused ops expected
FUSED = {
    "k3_lstm": 1,
    "k3_lstm_seq": 1,
    "k3_rnn_lstmcell": 1,
    "k3_lstm_b4": 1,
    "k3_lstm_t1": 1,
    "k3_lstm_state_in": 1,
    "k3_seq2seq": 2,
    "k3_lstm_return_state": 1,
    "k3_lstm_stacked": 2,
    "k3_bilstm": 2,
    "k3_lstm_backwards": 1,
    "k3_conv1d_lstm": 1,
    "k3_dense_lstm": 1,
    "tfk_rnn_lstmcell": 1,
    "tfk_lstm_nobias": 1,
    "tfk_lstm_return_state": 1,
    "k3_lstm_big": 1,
}
# inputs with a whole-sequence (dynamic-shape) accumulator, which TFLM computes wrongly
SEQUENCE_OUTPUT = {
    "k3_lstm_seq",
    "k3_seq2seq",
    "k3_lstm_return_state",
    "k3_lstm_stacked",
    "tfk_lstm_return_state",
}


def fuse(name_or_model, target="any", **options):
    model = name_or_model
    if not isinstance(model, tflgraph.Model):
        model = tflgraph.load(fixture(name_or_model))
    records = run_passes(
        model,
        ["fuse-lstm", "cleanup"],
        check_each=True,
        explain=True,
        target=target,
        options={"fuse-lstm": options},
    )
    return model, [e for r in records for e in r.explanations]


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fixture_is_fused_and_equal(name):
    model, _ = fuse(name)
    ops = model.op_counts()
    assert "WHILE" not in ops and ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == FUSED[name]
    assert len(model.subgraphs) == 1  # cond and body are gone, with their buffers
    model.check()
    for op in model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        assert op.options["cell_clip"] == 0.0 and op.options["fused_activation_function"] == 4
        assert op.inputs[18].is_variable and op.inputs[19].is_variable
    data = tflgraph.to_bytes(model)
    assert_same_outputs(fixture(name), data, ("litert",))
    assert_gives_litert_reference(fixture(name), data)
    if name not in SEQUENCE_OUTPUT:
        assert_same_outputs(fixture(name), data, ("tflm",))
    again = tflgraph.load(data)
    assert not any(r.changed for r in run_passes(again, ["fuse-lstm"]))  # nothing left to do
    assert again.op_counts() == ops


def test_folds_the_transposes_and_keeps_output_names():
    original = tflgraph.load(fixture("k3_lstm_b4"))
    names = [t.name for t in original.main.outputs]
    model, _ = fuse("k3_lstm_b4")
    assert set(model.op_counts()) == {"UNIDIRECTIONAL_SEQUENCE_LSTM", "FILL", "STRIDED_SLICE"}
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert op.inputs[0] is model.main.inputs[0] and not op.options["time_major"]
    assert [t.name for t in model.main.outputs] == names
    assert [t.name for _, t in model.signature_defs[0].outputs] == names


@pytest.mark.parametrize(
    "name, ops",
    [
        ("k3_lstm_seq", {"FILL": 2, "UNIDIRECTIONAL_SEQUENCE_LSTM": 1}),
        ("k3_lstm_backwards", {"FILL": 2, "REVERSE_V2": 1, "STRIDED_SLICE": 1,
                               "UNIDIRECTIONAL_SEQUENCE_LSTM": 1}),
        ("k3_bilstm", {"CONCATENATION": 1, "FILL": 4, "REVERSE_V2": 1, "STRIDED_SLICE": 2,
                       "UNIDIRECTIONAL_SEQUENCE_LSTM": 2}),
        # decoder: h0 is the encoder's last step (made variable), c0 the encoder's c in place
        ("k3_seq2seq", {"FILL": 2, "FULLY_CONNECTED": 1, "STRIDED_SLICE": 1,
                        "UNIDIRECTIONAL_SEQUENCE_LSTM": 2}),
        ("k3_lstm_state_in", {"RESHAPE": 2, "STRIDED_SLICE": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 1}),
    ],
)  # fmt: skip
def test_what_remains_around_the_fused_ops(name, ops):
    model, _ = fuse(name)
    assert model.op_counts() == ops


def test_weights_are_split_in_keras_gate_order():
    from tflgraph.rnn.loops import analyze_loop, while_loops
    from tflgraph.rnn.lstm_cell import match_lstm_cell

    original = tflgraph.load(fixture("k3_lstm"))
    cell = match_lstm_cell(analyze_loop(original.main, while_loops(original.main)[0]))
    model, _ = fuse("k3_lstm")
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    np.testing.assert_array_equal(np.concatenate([t.data for t in op.inputs[1:5]]), cell.W)
    np.testing.assert_array_equal(np.concatenate([t.data for t in op.inputs[5:9]]), cell.U)
    np.testing.assert_array_equal(np.concatenate([t.data for t in op.inputs[12:16]]), cell.b)
    assert op.inputs[9:12] == [None] * 3 and op.inputs[16:18] == [None] * 2
    assert op.inputs[20:24] == [None] * 4


def test_stateful_streaming_keeps_state_across_invokes_only_when_asked():
    model, _ = fuse("k3_lstm", stateful_streaming=True)
    assert "FILL" not in model.op_counts()
    data = tflgraph.to_bytes(model)
    for rt in ("litert", "tflm"):
        want = outputs_in(fixture("k3_lstm"), rt)
        carried = outputs_in(data, rt)
        assert np.allclose(want[0][0], carried[0][0], atol=1e-5)  # first invoke from zeros
        assert not np.allclose(want[1][0], carried[1][0], atol=1e-4)  # then the state carries
        reset = outputs_in(data, rt, reset=True)
        assert all(np.allclose(w[0], r[0], atol=1e-5) for w, r in zip(want, reset))


@pytest.mark.parametrize("name", ["k3_lstm_relu", "tfk_lstm_relu"])
def test_relu_activation_is_fused_for_litert_only(name):
    model, why = fuse(name)
    assert "WHILE" in model.op_counts()
    assert any("TFLM's fused LSTM then computes" in w for w in why)
    model, _ = fuse(name, target="litert")
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert op.options["fused_activation_function"] == 1  # RELU
    assert_same_outputs(fixture(name), model, ("litert",))
    # why not for TFLM: its kernel does not compute relu (if this starts failing, TFLM was fixed)
    want, got = outputs_in(fixture(name), "litert"), outputs_in(model, "tflm")
    assert np.max(np.abs(want[0][0] - got[0][0])) > 1e-2


@pytest.mark.parametrize("name", ["tfk_lstm_fused", "tfk_lstm_fused_seq", "tfk_bilstm"])
def test_converter_fused_models_are_untouched(name):
    before = tflgraph.load(fixture(name)).op_counts()
    model, _ = fuse(name)
    assert model.op_counts() == before


@pytest.mark.parametrize(
    "name, reason",
    [
        ("k3_lstm_hardsig", "recurrent activation is not sigmoid"),
        ("k3_lstm_masked", "masking is not fused"),
        ("k3_gru", "not an LSTM step"),
        ("k3_lstm_dynrange", "hybrid UNIDIRECTIONAL_SEQUENCE_LSTM reads one per tensor"),
    ],
)
def test_near_misses_are_left_alone_with_a_reason(name, reason):
    before = tflgraph.load(fixture(name)).op_counts()
    model, why = fuse(name)
    assert model.op_counts() == before
    assert any(reason in w for w in why), why


def test_proof_catches_what_the_structure_misses():
    model = tflgraph.load(fixture("k3_lstm"))
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    (f_times_c,) = [
        op for op in body.ops_of_type("MUL") if any(t in body.inputs for t in op.inputs)
    ]
    f_times_c.options["fused_activation_function"] = 1  # RELU(f * c): not an LSTM any more
    model, why = fuse(model)
    assert "WHILE" in model.op_counts()
    assert any("differs from the LSTM equations" in w for w in why), why


def test_counter_read_after_the_loop_is_left_alone():
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    (loop,) = sg.ops_of_type("WHILE")
    sg.outputs.append(loop.outputs[1])
    model, why = fuse(model)
    assert "WHILE" in model.op_counts()
    assert any("loop counter is read after the loop" in w for w in why)


def test_cli_explains_and_streams(tmp_path, capsys):
    out = tmp_path / "o.tflite"
    args = ["optimize", str(fixture("k3_lstm_hardsig")), "-o", str(out), "--explain"]
    assert cli.main(args + ["--no-verify"]) == 0
    assert "[fuse-lstm]" in capsys.readouterr().out
    streaming = ["--pass-option", "fuse-lstm.stateful_streaming=yes"]
    args = ["optimize", str(fixture("k3_lstm")), "-o", str(out), *streaming]
    assert cli.main(args + ["--no-verify"]) == 0
    fused = tflgraph.load(out)
    assert fused.op_counts() == {"STRIDED_SLICE": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 1}
    assert OP_CODES["WHILE"] not in [op.opcode for op in fused.main.operators]


@pytest.mark.parametrize(
    "steps, batch, sequences, backwards",
    [(10, 3, False, False), (7, 3, True, False), (1, 2, True, False), (5, 1, True, False),
     (6, 3, True, True), (6, 1, False, True)],
)  # fmt: skip
def test_synthetic_loops_batch_and_sequences(steps, batch, sequences, backwards):
    """Batch > 1 with return_sequences (TRANSPOSE in and out) and go_backwards, not among the
    fixtures; the same builder makes the benchmark's T and u scaling models."""
    data = keras_lstm_loop(steps, 5, 6, batch=batch, sequences=sequences, backwards=backwards)
    model, _ = fuse(tflgraph.load(data))
    allowed = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "FILL", "STRIDED_SLICE", "REVERSE_V2"}
    assert set(model.op_counts()) <= allowed
    assert model.op_counts().get("REVERSE_V2", 0) == backwards
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    x = model.main.inputs[0]
    assert not op.options["time_major"]
    assert op.inputs[0] is x or model.main.producer(op.inputs[0]).inputs[0] is x
    assert_same_outputs(data, model, ("litert",))
    assert_gives_litert_reference(data, tflgraph.to_bytes(model))


def test_loop_that_outputs_c_instead_of_h_is_left_alone():
    """A second reader of an internal value: the accumulator stores c' (not h') each step."""
    model = tflgraph.load(fixture("k3_lstm"))
    body = model.main.ops_of_type("WHILE")[0].options["body_subgraph_index"]
    write = body.producer(body.outputs[2])  # RESHAPE(h', [1, 1, 16]) into the accumulator
    body.set_input(write, 0, body.outputs[4])  # ... now RESHAPE(c')
    model, why = fuse(model)
    assert "WHILE" in model.op_counts()
    assert any("the accumulated output differs from the LSTM equations" in w for w in why), why


def test_computed_initial_state_becomes_the_variable_tensor():
    """h0, c0 = FC(input): the FCs write the fused op's state tensors at every invoke."""
    model = tflgraph.load(fixture("k3_lstm_state_in"))
    sg = model.main
    (loop,) = sg.ops_of_type("WHILE")
    for k in (3, 4):
        state = sg.new_tensor(f"computed{k}", (1, 16))
        weights = sg.new_constant(np.eye(16, dtype=np.float32) * (0.5 + k))
        sg.add_op("FULLY_CONNECTED", [loop.inputs[k], weights, None], [state], {})
        sg.set_input(loop, k, state)
    original = tflgraph.to_bytes(model)
    fused, _ = fuse(tflgraph.load(original))
    (op,) = fused.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert [fused.main.producer(op.inputs[k]).type for k in (18, 19)] == ["FULLY_CONNECTED"] * 2
    assert_same_outputs(original, fused)


@pytest.mark.parametrize("name", ["k3_lstm_seq", "k3_seq2seq", "k3_lstm_stacked", "k3_lstm"])
def test_fuses_after_the_loop_passes_too(name):
    """Whatever the pass order: after the `loops` pipeline (one counter, the in-place
    DYNAMIC_UPDATE_SLICE accumulator of static-loop-outputs, ...) the LSTMs still fuse."""
    model = tflgraph.load(fixture(name))
    tflgraph.optimize(model, "loops")
    assert "WHILE" in model.op_counts()
    loops_first, _ = fuse(model)
    assert "WHILE" not in loops_first.op_counts()
    assert_gives_litert_reference(fixture(name), tflgraph.to_bytes(loops_first))


def test_litert_keeps_the_loops_its_fused_kernel_runs_slower(tmp_path, capsys):
    """--target litert: k3_lstm_big (T=50 F=40 u=128, measured 1.8x slower fused) stays a loop
    and --explain says why; the small k3_lstm still fuses (benchmarks/rnn.md, LiteRT grid)."""
    out = tmp_path / "o.tflite"
    args = ["optimize", str(fixture("k3_lstm_big")), "-o", str(out), "--explain", "--no-verify"]
    assert cli.main(args + ["--target", "litert"]) == 0
    text = capsys.readouterr().out
    assert "kept as a loop for litert: the fused LSTM kernel is slower than XNNPACK's" in text
    assert "u=128, F=40" in text
    assert "WHILE" in tflgraph.load(out).op_counts()
    model, why = fuse("k3_lstm_big", target="litert")
    assert model.op_counts() == tflgraph.load(fixture("k3_lstm_big")).op_counts(), why
    model, _ = fuse("k3_lstm", target="litert")
    assert (
        model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "WHILE" not in model.op_counts()
    )


# (T, F, u, batch, whole sequence) -> kept as a loop for litert: each side of both limits
LITERT_CASES = [
    ((10, 8, 40, 1, False), False),  # 4u(F+u) = 7680 <= 8192
    ((10, 40, 32, 1, False), True),  # 9216 > 8192
    ((10, 128, 32, 1, True), False),  # 20480 <= 24576 for a whole sequence
    ((10, 40, 64, 1, True), True),  # 26624 > 24576
    ((10, 8, 8, 2, False), True),  # batch > 1
]


@pytest.mark.parametrize("shape, kept", LITERT_CASES)
@pytest.mark.parametrize("target", ["litert", "any", "tflm"])
def test_litert_cost_rule_on_synthetic_loops(shape, kept, target):
    """Only --target litert keeps loops (TFLM's fused op is never slower and is the one that
    runs return_sequences right); a kept loop is left exactly as it was."""
    steps, features, units, batch, sequences = shape
    data = keras_lstm_loop(steps, features, units, batch=batch, sequences=sequences)
    model, why = fuse(tflgraph.load(data), target=target)
    loop = target == "litert" and kept
    assert ("WHILE" in model.op_counts()) == loop, why
    assert any("kept as a loop for litert" in w for w in why) == loop
    if loop:
        assert model.op_counts() == tflgraph.load(data).op_counts()
