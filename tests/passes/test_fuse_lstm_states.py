"""The state tensors of fused LSTMs in the default pipeline: a fused op's h and c stay its own
variable tensors (also when one loop's results start another, as in seq2seq), a model output
is never read from a state that a fused op updates in place, and an initial state is written
at every invoke. Each case was once wrong in LiteRT or TFLM and is judged there."""

from __future__ import annotations

import numpy as np
from helpers import assert_gives_litert_reference, assert_same_outputs, fixture

import tflgraph
from tflgraph.rnn.loops import analyze_loop, rebuild_while
from tflgraph.rnn.lstm_cell import match_lstm_cell


def seq2seq_with_an_extra_encoder_state(model=None, read_after: bool = False) -> tflgraph.Model:
    """k3_seq2seq whose encoder loop also carries s' = s + 1, a third state that keeps
    fuse-lstm off the encoder (while it is there) but not off the decoder, whose h0 and c0
    are the encoder loop's results. read_after: s is a model output, so the state stays."""
    model = model or tflgraph.load(fixture("k3_seq2seq"))
    sg = model.main
    encoder = sg.ops_of_type("WHILE")[0]
    init = sg.new_constant(np.zeros((1, 4), np.float32), "extra_init")
    new, (arg,) = rebuild_while(sg, encoder, add=[init])
    body = new.options["body_subgraph_index"]
    step = body.new_tensor("extra_next", (1, 4))
    one = body.new_constant(np.ones((1, 4), np.float32), "one")
    body.add_op("ADD", [arg, one], [step], {"fused_activation_function": 0})
    body.outputs[-1] = step
    if read_after:
        sg.outputs.append(new.outputs[-1])
    model.check()
    return model


def seq2seq_with_encoder_last_step_output() -> tflgraph.Model:
    """The encoder loop also keeps acc' = RESHAPE(h', [1, 1, 16]); acc[-1] is a new model
    output (Keras' return_state: the output sequence's last step next to h and c)."""
    model = tflgraph.load(fixture("k3_seq2seq"))
    sg = model.main
    encoder = sg.ops_of_type("WHILE")[0]
    h = match_lstm_cell(analyze_loop(sg, encoder)).h
    new, (acc,) = rebuild_while(
        sg, encoder, add=[sg.new_constant(np.zeros((1, 1, 16), np.float32))]
    )
    body = new.options["body_subgraph_index"]
    row = body.new_tensor("acc_next", (1, 1, 16))
    shape = body.new_constant(np.array([1, 1, 16], np.int32), "row_shape")
    body.add_op("RESHAPE", [body.outputs[h.index], shape], [row], {"new_shape": [1, 1, 16]})
    body.outputs[-1] = row
    last = sg.new_tensor("encoder_last_step", (1, 16))
    ends = [sg.new_constant(np.array(v, np.int32)) for v in ([-1, 0, 0], [0, 0, 0], [1, 1, 1])]
    options = {"begin_mask": 6, "end_mask": 6, "shrink_axis_mask": 1}
    sg.add_op("STRIDED_SLICE", [new.outputs[-1], *ends], [last], options)
    sg.outputs.append(last)
    model.check()
    return model


def test_decoder_fused_before_its_encoder_keeps_variable_states():
    """Round 1 of the default pipeline fuses the decoder (its states become the encoder
    WHILE's results); drop-dead-loop-values rebuilds the encoder WHILE, and round 2 fuses
    it. Both must keep the decoder's states variable tensors (LiteRT refused to load the
    result: 'output_state != nullptr'; TFLM could not allocate it)."""
    original = tflgraph.to_bytes(seq2seq_with_an_extra_encoder_state())
    model = tflgraph.load(original)
    tflgraph.optimize(model, "default", check_each=True)
    assert "WHILE" not in model.op_counts()
    for op in model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        assert op.inputs[18].is_variable and op.inputs[19].is_variable
    assert_gives_litert_reference(original, model)


def test_last_step_is_not_read_from_a_state_a_fused_op_updates_in_place():
    """The encoder stays a loop; the fused decoder updates the encoder's final h in place.
    last-step-from-state moved the acc[-1] output onto that h, so the model returned the
    decoder's final h there (off by 0.46 in LiteRT and TFLM)."""
    model = seq2seq_with_an_extra_encoder_state(seq2seq_with_encoder_last_step_output(), True)
    original = tflgraph.to_bytes(model)
    tflgraph.optimize(model, "default", check_each=True)
    assert model.op_counts()["WHILE"] == 1
    assert model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert_gives_litert_reference(original, model)


def test_decoder_starting_h_and_c_from_one_fused_cell_state_is_left_alone():
    """Decoder h0 = c0 = the encoder's final c, the decoder's input depending on the
    encoder's h (so the encoder is fused first and its in-place c could be shared). Both
    decoder states became that one variable tensor, updated as h and as c: off by 0.14."""
    model = tflgraph.load(fixture("k3_seq2seq"))
    sg = model.main
    encoder, decoder = sg.ops_of_type("WHILE")
    enc = match_lstm_cell(analyze_loop(sg, encoder))
    dec_loop = analyze_loop(sg, decoder)
    dec = match_lstm_cell(dec_loop)
    to_time_major = sg.producer(dec_loop.seq.init)  # RESHAPE(dec [1, 5, 6])
    weights = np.random.default_rng(0).uniform(-1, 1, (6, 16)).astype(np.float32)
    proj = sg.new_tensor("proj", (1, 6))
    sg.add_op("FULLY_CONNECTED", [enc.h.result, sg.new_constant(weights), None], [proj], {})
    row = sg.new_tensor("proj_row", (1, 1, 6))
    shape = sg.new_constant(np.array([1, 1, 6], np.int32))
    sg.add_op("RESHAPE", [proj, shape], [row], {"new_shape": [1, 1, 6]})
    x = sg.new_tensor("dec_plus_proj", (1, 5, 6))
    sg.add_op("ADD", [to_time_major.inputs[0], row], [x], {"fused_activation_function": 0})
    sg.set_input(to_time_major, 0, x)
    sg.set_input(decoder, dec.h.index, enc.c.result)
    sg.set_input(decoder, dec.c.index, enc.c.result)
    model.check()
    original = tflgraph.to_bytes(model)
    tflgraph.optimize(model, "default", check_each=True)
    for op in model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        assert op.inputs[18] is not op.inputs[19]
    assert_gives_litert_reference(original, model)


def test_initial_state_computed_from_constants_only_is_copied_every_invoke():
    """h0, c0 = DEQUANTIZE(float16 constant) (a float16-quantized model with a non-zero
    initial state). Made the fused op's variable tensors themselves, LiteRT computed them
    once at Prepare and the fused op kept updating them: invoke 1 differed by 0.011. (TFLM
    cannot run the original: it has no float16 DEQUANTIZE; LiteRT judges.)"""
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    (loop,) = sg.ops_of_type("WHILE")
    cell = match_lstm_cell(analyze_loop(sg, loop))
    for state, value in ((cell.h, 0.5), (cell.c, -0.3)):
        init = sg.new_tensor(f"init{state.index}", (1, 16))
        half = sg.new_constant(np.full((1, 16), value, np.float16), f"half{state.index}")
        sg.add_op("DEQUANTIZE", [half], [init])
        sg.set_input(loop, state.index, init)
    original = tflgraph.to_bytes(model)
    tflgraph.optimize(model, "default", check_each=True)
    assert model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert_same_outputs(original, model, ("litert",))
