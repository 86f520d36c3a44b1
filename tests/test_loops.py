"""tflgraph.rnn.loops: the roles of a Keras/TF recurrent WHILE loop's operands, on real fixtures."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.rnn.loops import (
    analyze_loop,
    batch_major_source,
    is_last_step_slice,
    replace_result,
    scalar_value,
    swaps_time_batch,
    while_loops,
    with_static_accumulator,
)


def loops_of(name: str):
    model = tflgraph.load(fixture(name))
    sg = model.main
    return sg, [analyze_loop(sg, op) for op in while_loops(sg)]


@pytest.mark.parametrize(
    "name, states, acc_kind",
    [
        ("k3_lstm", 2, "last"),  # Keras 3: two counters, LOGICAL_AND in cond
        ("k3_lstm_seq", 2, "sequence"),
        ("k3_rnn_lstmcell", 2, "last"),
        ("tfk_rnn_lstmcell", 2, "last"),  # tf_keras: one counter in cond
        ("tfk_lstm_return_state", 2, "sequence"),
        ("k3_gru", 1, "last"),
        ("k3_gru_seq", 1, "sequence"),
        ("k3_simplernn", 1, "last"),
    ],
)
def test_roles_of_single_loops(name, states, acc_kind):
    sg, (loop,) = loops_of(name)
    assert loop is not None
    assert loop.trip_count == 10
    assert [c.index for c in loop.counters] == [0, 1]
    assert loop.time.index == 1 and loop.time.init.data.item() == 0
    assert len(loop.sequences) == 1 and loop.seq.index == len(loop.operands) - 1
    assert tuple(loop.seq.init.shape) == (10, 1, 8)
    assert loop.x_t.shape == (1, 8) and loop.body.producer(loop.x_t).type == "GATHER"
    assert len(loop.states) == states and loop.invariants == []
    assert loop.acc.index == 2 and loop.acc_kind == acc_kind
    # the per-step output written to the accumulator is the new h (the first state's next)
    assert loop.acc_value is loop.states[0].next
    src, reverse = batch_major_source(sg, loop.seq.init)
    assert tuple(src.shape) == (1, 10, 8) and src is sg.inputs[0] and not reverse
    readers = sg.consumers(loop.acc.result)
    if acc_kind == "last":
        assert [is_last_step_slice(p, 1) for p in readers] == [True]
    else:
        assert [swaps_time_batch(p) for p in readers] == [True]


def test_seq2seq_encoder_without_accumulator_and_decoder_with_computed_state():
    sg, (enc, dec) = loops_of("k3_seq2seq")
    assert enc.acc is None and len(enc.states) == 2 and enc.trip_count == 10
    assert dec.acc_kind == "sequence" and dec.trip_count == 5
    assert [s.init for s in dec.states] == [s.result for s in enc.states]


def test_batch4_reads_through_transpose():
    sg, (loop,) = loops_of("k3_lstm_b4")
    assert loop.batch == 4
    src, reverse = batch_major_source(sg, loop.seq.init)
    assert sg.producer(loop.seq.init).type == "TRANSPOSE" and tuple(src.shape) == (4, 10, 8)


def test_go_backwards_and_bidirectional_see_the_reverse():
    sg, (loop,) = loops_of("k3_lstm_backwards")
    assert batch_major_source(sg, loop.seq.init)[1] is True
    sg, loops = loops_of("k3_bilstm")
    assert sorted(batch_major_source(sg, lp.seq.init)[1] for lp in loops) == [False, True]


def test_stacked_second_loop_reads_first_accumulator():
    sg, (first, second) = loops_of("k3_lstm_stacked")
    assert first.acc_kind == "sequence" and second.acc_kind == "last"
    assert second.seq.init is first.acc.result
    assert batch_major_source(sg, second.seq.init) is None  # time-major already


def test_masked_loop_has_two_sequences_and_three_states():
    sg, (loop,) = loops_of("k3_lstm_masked")
    assert len(loop.sequences) == 2 and len(loop.steps) == 2 and len(loop.states) == 3


def test_not_a_loop_says_why():
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    reasons = []
    reshape = sg.ops_of_type("RESHAPE")[0]
    assert analyze_loop(sg, reshape, reasons.append) is None
    assert reasons == [f"WHILE {reshape.outputs[0].name!r}: not a WHILE op"]


def test_cond_of_another_shape_is_refused():
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    (op,) = while_loops(sg)
    cond = op.options["cond_subgraph_index"]
    less = cond.ops_of_type("LESS")[0]
    less.opcode = tflgraph.ir.OP_CODES["GREATER"]
    reasons = []
    assert analyze_loop(sg, op, reasons.append) is None
    assert "cond is not LESS" in reasons[0]


def test_last_step_slice_and_swap_recognisers_refuse_lookalikes():
    sg, (loop,) = loops_of("k3_lstm")
    (sl,) = sg.consumers(loop.acc.result)
    assert is_last_step_slice(sl, 1) and is_last_step_slice(sl, 2)  # begin -1: any length
    begin = sl.inputs[1]
    begin.buffer = tflgraph.Buffer(np.array([0, 0, 0], np.int32).view(np.uint8))  # acc[0]
    assert not is_last_step_slice(sl, 2)
    assert not swaps_time_batch(sl)
    reshape = sg.producer(loop.seq.init)
    assert swaps_time_batch(reshape)  # [1, 10, 8] -> [10, 1, 8]: a size-1 axis moves


def test_replace_result_keeps_output_names_and_signatures():
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    old = sg.outputs[0]
    name = old.name
    new = sg.new_tensor("replacement", old.shape)
    sg.add_op("RELU", [sg.inputs[0]], [new])
    replace_result(sg, old, new)
    assert sg.outputs[0] is new and new.name == name and old.name == "replacement"
    assert model.signature_defs[0].outputs[0][1] is new


def test_scalar_value_and_loop_name():
    sg, (loop,) = loops_of("k3_lstm")
    assert scalar_value(loop.counters[0].init) == 0
    assert scalar_value(loop.seq.init) is None
    assert loop.name == "WHILE 'functional_1/lstm_1/while'"


def test_with_static_accumulator_sees_the_in_place_accumulator():
    model = tflgraph.load(fixture("k3_lstm_seq"))
    tflgraph.optimize(model, "static-loop-outputs")
    sg = model.main
    (op,) = while_loops(sg)
    loop = analyze_loop(sg, op)
    assert loop.acc is None and len(loop.states) == 3  # the DYNAMIC_UPDATE_SLICE one is a state
    view = with_static_accumulator(loop)
    assert view.acc_kind == "sequence" and view.acc.index == 2 and len(view.states) == 2
    assert view.acc_value is view.states[0].next  # h' is written into the accumulator
    sg, (plain,) = loops_of("k3_lstm")
    assert with_static_accumulator(plain) is plain  # nothing to move
