"""reroll: unrolled RNNs (Keras 3 and tf_keras `unroll=True`) become one WHILE loop, which
fuse-lstm turns into UNIDIRECTIONAL_SEQUENCE_LSTM; GRU and SimpleRNN stay one loop that TFLM
runs. The re-rolled models give the unrolled model's and Keras' outputs in LiteRT and TFLM;
chains that are not T copies of one cell, and int8 chains, are left alone with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_equal_values,
    assert_gives_litert_reference,
    assert_gives_tf_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    fixture,
    outputs_in,
    run,
)

import tflgraph

# freeze-shapes and fold-constants first, as in the default pipeline: batch-None models
PASSES = ("freeze-shapes", "fold-constants", "reroll", "fuse-lstm", "fuse-simple-rnn", "cleanup")

# fixture -> fused LSTM layers, and the converter's own fused file for the same layer
LSTMS = {
    "k3_lstm_unroll": (1, "tfk_lstm_fused"),
    "tfk_lstm_unroll": (1, "tfk_lstm_fused"),
    "k3_lstm_unroll_seq": (1, "tfk_lstm_fused_seq"),
    "tfk_lstm_unroll_seq": (1, "tfk_lstm_fused_seq"),
    "k3_bilstm_unroll": (2, "tfk_bilstm"),  # (whose output is the last step only)
    "k3_lstm_unroll_t50": (1, "tfk_lstm_big_fused"),
    "tfk_lstm_unroll_t50": (1, "tfk_lstm_fused"),  # the same layer at T=10: T changes no weight
    "k3_lstm_unroll_stacked": (2, None),
    "k3_lstm_unroll_dense": (1, None),
    "k3_lstm_unroll_backwards": (1, "tfk_lstm_fused"),  # go_backwards: steps read last first
    "k3_lstm_unroll_b4": (1, None),  # batch 4: TRANSPOSE to time-major
    "k3_lstm_unroll_bnone": (1, "tfk_lstm_fused"),  # batch None
    "k2_lstm_unroll_tf215": (1, "tfk_lstm_fused"),  # Keras 2, converted by TF 2.15
}
# fixture -> the largest size of the loop against the unrolled file (issue 14)
LOOPS = {
    "k3_gru_unroll": 0.5,
    "tfk_gru_unroll": 0.5,
    "k3_gru_unroll_seq": 0.5,
    "k3_simplernn_unroll": 0.6,
    "tfk_simplernn_unroll": 0.6,
    "k3_simplernn_unroll_seq": 0.7,
    "k3_custom_cell_unroll": 0.5,  # a user-written cell (fixtures: minimal_gated_cell)
    "k3_gru_unroll_t50": 0.4,  # 0.38x: the float weights (80 KB) are stored once either way
    "k3_gru16_unroll_t50": 0.2,  # k3_gru_unroll's GRU(16) at T=50: 0.07x
    "tfk_gru_unroll_t50": 0.2,
    "k3_simplernn_unroll_t50": 0.2,
    "tfk_simplernn_unroll_t50": 0.2,
    "k3_custom_cell_unroll_t50": 0.2,
    "k2_gru_unroll_bnone_tf215": 0.4,  # Keras 2, TF 2.15, batch None, sequence output
}


def assert_same_outputs_as_unrolled(name: str, data: bytes) -> None:
    """The unrolled model's outputs in LiteRT and TFLM, invoke after invoke; a batch-None
    original does not allocate in TFLM (FILL with computed dims): LiteRT's then."""
    if "bnone" in name:
        assert_gives_litert_reference(fixture(name), data)
    else:
        assert_same_outputs(fixture(name), data, ("litert", "tflm"))


def explanations(records) -> list[str]:
    return [e for r in records for e in r.explanations]


@pytest.mark.parametrize("name", LSTMS)
def test_unrolled_lstm_becomes_the_fused_op(name):
    layers, converters = LSTMS[name]
    model, records = run(name, PASSES, "tflm")
    ops = model.op_counts()
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == layers
    assert not {"UNPACK", "WHILE", "LOGISTIC"} & set(ops), ops
    data = tflgraph.to_bytes(model)
    if converters is not None:  # no larger than the converter's fused LSTM (+5%)
        assert len(data) <= 1.05 * fixture(converters).stat().st_size
    assert_same_outputs_as_unrolled(name, data)
    assert_gives_tf_reference(data, name, ("litert", "tflm"))


@pytest.mark.parametrize("name", LOOPS)
def test_unrolled_gru_and_simple_rnn_become_one_static_loop(name):
    model, records = run(name, PASSES, "tflm")
    ops = model.op_counts()
    assert ops["WHILE"] == 1 and "UNPACK" not in ops
    data = tflgraph.to_bytes(model)
    assert len(data) <= LOOPS[name] * fixture(name).stat().st_size
    # TFLM runs the loop (static shapes) with the unrolled model's and Keras' outputs
    assert_same_outputs_as_unrolled(name, data)
    assert_gives_tf_reference(data, name, ("litert", "tflm"))


def test_dynamic_range_gru_becomes_one_hybrid_loop():
    """int8 weights, float activations: proved with the weights dequantized; LiteRT's hybrid
    kernels give the unrolled model's outputs (TFLM has no hybrid kernels, either way)."""
    name = "k3_gru_unroll_dynrange"
    model, records = run(name, PASSES, "litert")
    ops = model.op_counts()
    assert ops["WHILE"] == 1 and "UNPACK" not in ops
    assert len(tflgraph.to_bytes(model)) <= 0.6 * fixture(name).stat().st_size
    assert_same_outputs(fixture(name), model, ("litert",))


def test_simple_rnn_becomes_the_fused_rnn_op_for_litert():
    model, records = run("k3_simplernn_unroll_seq", PASSES, "litert")
    assert model.op_counts().get("UNIDIRECTIONAL_SEQUENCE_RNN") == 1
    assert_gives_tf_reference(model, "k3_simplernn_unroll_seq", ("litert",))


@pytest.mark.parametrize("name", ["k3_lstm_unroll_seq", "k3_gru_unroll"])
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, PASSES, "tflm")


def test_int8_chain_is_left_alone_with_a_reason():
    name = "k3_lstm_unroll_bnone_int8"
    model, records = run(name, ("freeze-shapes", "fold-constants", "reroll"), "tflm")
    assert "WHILE" not in model.op_counts()
    why = explanations(records)
    assert any("quantized with other scales" in e for e in why), why


def _step_weights(model, step: int):
    """The FULLY_CONNECTED of the step-input projection of `step` and its weight tensor."""
    (split,) = model.main.ops_of_type("UNPACK")
    (fc,) = model.main.consumers(split.outputs[step])
    return fc, fc.inputs[1]


def _own_weights(model, step: int, scale: float) -> None:
    """Give `step`'s input projection its own copy of the weights, times `scale`."""
    fc, w = _step_weights(model, step)
    twin = model.main.new_constant(np.array(w.data) * np.float32(scale), "own_weights")
    model.main.set_input(fc, 1, twin)


def test_equal_weights_in_separate_buffers_are_one_cell():
    model = tflgraph.load(fixture("k3_lstm_unroll"))
    _own_weights(model, 4, 1.0)  # the same values, another buffer
    model, records = run(model, PASSES, "tflm")
    assert model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1


def test_a_step_with_other_weights_is_left_alone():
    model = tflgraph.load(fixture("k3_lstm_unroll"))
    _own_weights(model, 6, 1.5)
    before = tflgraph.to_bytes(model)
    model, records = run(model, ("reroll",), "tflm")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in model.op_counts()
    assert tflgraph.to_bytes(model) == before
    why = explanations(records)
    assert any("step 6 does not compute what step 4 does" in e for e in why), why


def test_a_first_step_that_is_not_the_cell_is_left_alone():
    """The first step is specialised, so only the numbers say whether it is the cell from a
    zero state: other weights there are found by the proof, and the graph is restored."""
    model = tflgraph.load(fixture("k3_lstm_unroll"))
    _own_weights(model, 0, 1.5)
    before = tflgraph.to_bytes(model)
    model, records = run(model, ("reroll",), "tflm")
    assert tflgraph.to_bytes(model) == before
    why = explanations(records)
    assert any("the loop is not the chain" in e for e in why), why


def test_a_middle_step_read_after_the_chain_is_left_alone():
    """A value of step 5 that the model also outputs (a second consumer) is not the last step's
    state nor a PACKed output: a loop cannot give it."""
    model = tflgraph.load(fixture("k3_lstm_unroll"))
    (split,) = model.main.ops_of_type("UNPACK")
    (fc,) = model.main.consumers(split.outputs[5])
    model.main.outputs.append(fc.outputs[0])
    model, records = run(model, ("reroll",), "tflm")
    assert "WHILE" not in model.op_counts()
    why = explanations(records)
    assert any("of step 5 is read after the chain" in e for e in why), why


def _steps_read_otherwise(model, how: str) -> None:
    """Replace the UNPACK of k3_lstm_unroll's time-major sequence [10, 1, 8]: "split": one
    SPLIT along time and a RESHAPE per step; "slice": one STRIDED_SLICE of the batch-major
    input [1, 10, 8] per step (as a PyTorch loop over x[:, t] converts)."""
    sg = model.main
    (unpack,) = sg.ops_of_type("UNPACK")
    i32 = np.int32
    if how == "split":
        parts = [sg.new_tensor(f"part{t}", (1, 1, 8)) for t in range(10)]
        axis = sg.new_constant(np.array(0, i32), "time")
        sg.add_op("SPLIT", [axis, unpack.inputs[0]], parts, {"num_splits": 10})
    for t, x_t in enumerate(unpack.outputs):
        new = sg.new_tensor(f"x{t}", (1, 8))
        if how == "split":
            shape = sg.new_constant(np.array([1, 8], i32), "step_shape")
            sg.add_op("RESHAPE", [parts[t], shape], [new], {"new_shape": [1, 8]})
        else:
            ends = [np.array(v, i32) for v in ([0, t, 0], [0, t + 1, 0], [1, 1, 1])]
            options = {"begin_mask": 5, "end_mask": 5, "shrink_axis_mask": 2}
            consts = [sg.new_constant(v, "slice") for v in ends]
            sg.add_op("STRIDED_SLICE", [sg.inputs[0], *consts], [new], options)
        sg.replace_all_uses(x_t, new)


def _outputs_concatenated(model) -> None:
    """Replace k3_lstm_unroll_seq's PACK (time-major) and RESHAPE to [1, 10, 16] by a RESHAPE
    of every step's h to [1, 1, 16] and one CONCATENATION along axis 1."""
    sg = model.main
    (pack,) = sg.ops_of_type("PACK")
    (to_batch_major,) = sg.consumers(pack.outputs[0])
    rows = []
    for t, h in enumerate(pack.inputs):
        rows.append(sg.new_tensor(f"row{t}", (1, 1, 16)))
        shape = sg.new_constant(np.array([1, 1, 16], np.int32), "row_shape")
        sg.add_op("RESHAPE", [h, shape], [rows[-1]], {"new_shape": [1, 1, 16]})
    y = sg.new_tensor("sequence", (1, 10, 16))
    sg.add_op("CONCATENATION", rows, [y], {"axis": 1})
    sg.replace_all_uses(to_batch_major.outputs[0], y, keep_name=True)


@pytest.mark.parametrize(
    "name, change",
    [
        ("k3_lstm_unroll", lambda m: _steps_read_otherwise(m, "split")),
        ("k3_lstm_unroll", lambda m: _steps_read_otherwise(m, "slice")),
        ("k3_lstm_unroll_seq", _outputs_concatenated),
    ],
    ids=["SPLIT", "STRIDED_SLICE", "CONCATENATION"],
)
def test_steps_split_or_sliced_and_outputs_concatenated(name, change):
    model = tflgraph.load(fixture(name))
    change(model)
    changed_input = tflgraph.to_bytes(model)
    model, records = run(model, PASSES, "tflm")
    ops = model.op_counts()
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1, explanations(records)
    assert not {"UNPACK", "SPLIT", "WHILE", "CONCATENATION", "LOGISTIC"} & set(ops), ops
    assert_same_outputs(changed_input, model, ("litert", "tflm"))
    assert_gives_tf_reference(model, name, ("litert", "tflm"))


def _loops_and_main_ops(model) -> tuple[list[int], set[str]]:
    """The operand count of each WHILE (t, h, c, [acc], seq for an LSTM) and the main
    subgraph's op types."""
    loops = [len(op.inputs) for sg in model.subgraphs for op in sg.ops_of_type("WHILE")]
    return loops, {op.type for op in model.main.iter_ops()}


def test_relu_lstms_whose_last_step_fuses_add_and_relu_become_loops():
    """A relu LSTM's last step computes RELU(c_T) with the ADD that makes c_T (the converter
    fuses them: nothing else reads c_T), as Fred-pounds/edged_sign_talk's published model
    does: both stacked layers become loops carrying h and c, with Keras' outputs."""
    name = "k3_relu_lstm_unroll_stacked"
    model, records = run(name, PASSES, "tflm")
    loops, main = _loops_and_main_ops(model)
    assert loops == [5, 4], explanations(records)
    assert not {"UNPACK", "LOGISTIC", "RELU"} & main, main
    assert_same_outputs_as_unrolled(name, tflgraph.to_bytes(model))
    assert_gives_tf_reference(model, name, ("litert", "tflm"))


def test_dynamic_range_relu_lstms_become_hybrid_loops():
    """The same with int8 weights (Fred-pounds' model is hybrid): LiteRT's hybrid kernels give
    the unrolled model's outputs; for TFLM dequantize-hybrid then gives the loops float
    weights, within the hybrid kernels' activation quantization error."""
    name = "k3_relu_lstm_unroll_dynrange"
    model, records = run(name, PASSES, "litert")
    loops, main = _loops_and_main_ops(model)
    assert loops == [5, 4], explanations(records)
    assert not {"UNPACK", "LOGISTIC", "RELU"} & main, main
    assert_same_outputs(fixture(name), model, ("litert",))
    model, _ = run(name, (*PASSES, "dequantize-hybrid"), "tflm")
    assert _loops_and_main_ops(model)[0] == [5, 4]
    want = outputs_in(fixture(name), "litert")
    for w, g in zip(want, outputs_in(model, "tflm")):
        assert_equal_values(w[0], g[0], rtol=2e-2, where="tflm against the hybrid original")


def test_stacked_layers_are_rerolled_in_one_run():
    """The upper layer's steps read the lower layer's loop once that is re-rolled (not the
    PACK it replaced): both go in the pass's first run, with nothing to explain."""
    model, records = run("k3_lstm_unroll_stacked", ("reroll",), "tflm")
    first = next(r for r in records if r.name == "reroll")
    assert first.stats["chains_rerolled"] == 2
    assert not explanations(records)
