"""Loop cleanups: merge-loop-counters, constant-trip-count, drop-dead-loop-values. Each keeps
the outputs bit-identical in LiteRT and TFLM, invoke after invoke, and leaves near-misses."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_gives_litert_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
)

import tflgraph
from tflgraph.rnn import loops

CLEANUPS = ("merge-loop-counters", "constant-trip-count", "drop-dead-loop-values")


def the_loop(model):
    (op,) = model.main.ops_of_type("WHILE")
    return op, op.options["cond_subgraph_index"], op.options["body_subgraph_index"]


@pytest.mark.parametrize(
    "name", ["k3_gru", "k3_gru_b4", "k3_gru_reset_before", "k3_simplernn_relu", "k3_lstm_hardsig"]
)
def test_keras3_loop_carries_one_counter_and_checks_one_less(name):
    model, records = run(name, CLEANUPS)
    assert all(changed(records, p) for p in CLEANUPS)
    op, cond, body = the_loop(model)
    original_op, *_ = the_loop(tflgraph.load(fixture(name)))
    assert len(op.inputs) == len(original_op.inputs) - 1  # the second counter is gone
    assert [o.type for o in cond.operators] == ["LESS"]
    assert cond.operators[0].inputs[1].data.item() == 10
    assert sum(1 for o in body.operators if o.type == "ADD" and o.inputs[0].type == 2) == 1
    model.check()
    assert_same_outputs(fixture(name), model, exact=True)


def test_tf_keras_loop_drops_its_unread_counter():
    """tf_keras carries a loop counter that only counts: cond reads the time counter."""
    model, records = run("tfk_gru", CLEANUPS)
    assert not changed(records, "merge-loop-counters")  # nothing but its own step reads it
    assert not changed(records, "constant-trip-count")  # already LESS(time, 10)
    assert changed(records, "drop-dead-loop-values")
    op, _, _ = the_loop(model)
    assert len(op.inputs) == 4
    assert_same_outputs(fixture("tfk_gru"), model, exact=True)


def test_sequence_loop_keeps_its_accumulator_and_runs_in_tflm():
    model, _ = run("k3_gru_seq", ("static-loop-outputs",) + CLEANUPS)
    op, _, _ = the_loop(model)
    assert len(op.inputs) == 4  # time, accumulator, h, x: the accumulator result is read
    assert_same_outputs(fixture("k3_gru_seq"), model, runtime_names=("litert",), exact=True)
    assert_gives_litert_reference(fixture("k3_gru_seq"), model, ("tflm",))


@pytest.mark.parametrize("name", ["k3_gru", "tfk_gru_reset_before"])
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, CLEANUPS + LAST)


def test_counters_starting_apart_are_not_merged():
    """Near-miss: Keras 3's second counter starting at 1 is one step ahead of time. The trip
    count becomes min(10 - 1, 10 - 0) = 9 and is still made constant."""
    model = tflgraph.load(fixture("k3_gru"))
    op, _, body = the_loop(model)
    loop = loops.analyze_loop(model.main, op)
    other = next(c for c in loop.counters if c is not loop.time)
    model.main.set_input(op, other.index, model.main.new_constant(np.array(1, np.int32)))
    reference = tflgraph.to_bytes(model)
    _, records = run(model, CLEANUPS)
    assert not changed(records, "merge-loop-counters")
    assert changed(records, "constant-trip-count")
    _, cond, _ = the_loop(model)
    assert cond.operators[-1].inputs[1].data.item() == 9
    assert_same_outputs(reference, model, exact=True)


def test_operand_read_by_cond_is_kept():
    """Near-miss for drop-dead-loop-values: without merging, cond still reads counter 0."""
    model, records = run("k3_gru", ("drop-dead-loop-values",))
    assert not changed(records, "drop-dead-loop-values")
    op, _, _ = the_loop(model)
    assert len(op.inputs) == 5


LAST = ("last-step-from-state", "drop-dead-loop-values")


@pytest.mark.parametrize(
    "name", ["k3_gru", "k3_gru_b4", "tfk_gru", "k3_simplernn", "k3_lstm_hardsig"]
)
def test_last_step_is_read_from_the_state(name):
    """acc[-1] of the one-row accumulator is the final h: the accumulator is no longer carried."""
    model, records = run(name, CLEANUPS + LAST)
    assert changed(records, "last-step-from-state")
    op, _, body = the_loop(model)
    assert all(len(t.shape) != 3 or t.shape[0] != 1 for t in op.inputs)  # no [1, B, u] operand
    assert [o.type for o in model.main.operators if o.type == "STRIDED_SLICE"] == []
    model.check()
    assert [t.name for t in model.main.outputs] == [
        t.name for t in tflgraph.load(fixture(name)).main.outputs
    ]
    assert_same_outputs(fixture(name), model, exact=True)


def test_sequence_accumulator_is_not_a_last_step():
    _, records = run("k3_gru_seq", ("static-loop-outputs",) + LAST)
    assert not changed(records, "last-step-from-state")


def test_accumulator_read_whole_is_left_alone():
    """Near-miss: the caller also reads the [1, B, u] accumulator itself (a model output)."""
    model = tflgraph.load(fixture("k3_gru"))
    op, _, _ = the_loop(model)
    acc = next(t for t in op.outputs if len(t.shape) == 3 and t.shape[0] == 1)
    model.main.outputs.append(acc)
    reference = tflgraph.to_bytes(model)
    _, records = run(model, LAST)
    assert not changed(records, "last-step-from-state")
    assert_same_outputs(reference, model, exact=True)
