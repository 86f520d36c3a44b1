"""hoist-input-projection: FULLY_CONNECTED(x_t, W) [+ bias ADD] leaves the loop as one
FULLY_CONNECTED over all steps; outputs equal in LiteRT (and TFLM runs the result); by default
(target any/tflm) a hoist that would make TFLM copy more per step is refused."""

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
from loop_models import keras_lstm_loop

import tflgraph
from tflgraph.rnn import loops

HOIST = ("static-loop-outputs", "hoist-input-projection", "drop-dead-loop-values")


def body_of(model):
    (op,) = model.main.ops_of_type("WHILE")
    return op, op.options["body_subgraph_index"]


def reads_of_sequence(model) -> int:
    """How many FULLY_CONNECTED ops in the body read a GATHER of a loop operand directly."""
    _, body = body_of(model)
    return sum(
        1
        for fc in body.ops_of_type("FULLY_CONNECTED")
        if (p := body.producer(fc.inputs[0])) is not None and p.type == "GATHER"
    )


# fixture -> projections hoisted (custom cell: x Wz and x W become one FC, split in the body)
HOISTED = {
    "k3_gru": 1,
    "k3_gru_b4": 1,
    "tfk_gru_reset_before": 1,
    "k3_simplernn": 1,
    "k3_custom_cell": 2,
    "k3_gru_seq": 1,
}


@pytest.mark.parametrize("name", sorted(HOISTED))
def test_projection_leaves_the_loop_for_litert(name):
    model, records = run(name, HOIST, target="litert")
    stats = [r.stats for r in records if r.name == "hoist-input-projection"]
    assert sum(s["projections_hoisted"] for s in stats) == HOISTED[name]
    assert reads_of_sequence(model) == 0
    main_fcs = model.main.ops_of_type("FULLY_CONNECTED")
    assert len(main_fcs) == 1 and main_fcs[0].outputs[0].shape[0] == 10 * loops_batch(model)
    model.check()
    assert_same_outputs(fixture(name), model, runtime_names=("litert",))
    assert_gives_litert_reference(fixture(name), model, ("tflm",))


def loops_batch(model) -> int:
    return int(model.main.inputs[0].shape[0])


def test_input_sequence_is_no_longer_carried():
    model, _ = run("k3_gru", HOIST, target="litert")
    op, body = body_of(model)
    assert [t.shape for t in op.inputs if len(t.shape) == 3] == [(1, 1, 16), (10, 1, 48)]


@pytest.mark.parametrize("target", ["any", "tflm"])
def test_hoist_that_carries_more_is_refused_for_tflm(target):
    """GRU: 3u = 48 projected values per step against F = 8 inputs: TFLM would copy more."""
    model, records = run("k3_gru", HOIST, target=target)
    assert not changed(records, "hoist-input-projection")
    notes = [e for r in records for e in r.explanations]
    assert any("hoisting would carry 48 > 8 values per step" in e for e in notes)


def test_separate_bias_add_is_folded_into_the_hoisted_bias():
    """FULLY_CONNECTED(x_t, W) without bias followed by ADD(y, b): hoisted as one FC."""
    model = tflgraph.load(fixture("k3_simplernn"))
    op, body = body_of(model)
    loop = loops.analyze_loop(model.main, op)
    (fc,) = [o for o in body.consumers(loop.x_t) if o.type == "FULLY_CONNECTED"]
    bias = fc.inputs[2]
    body.set_input(fc, 2, None)
    y = fc.outputs[0]
    biased = body.new_tensor("y_plus_b", y.shape, "float32")
    (reader,) = body.consumers(y)
    body.set_input(reader, reader.inputs.index(y), biased)
    body.add_op("ADD", [y, bias], [biased], {"fused_activation_function": 0})
    model.check()
    reference = tflgraph.to_bytes(model)
    _, records = run(model, HOIST, target="litert")
    assert changed(records, "hoist-input-projection")
    assert not any(o.type == "ADD" and o.inputs[1] is bias for o in body_of(model)[1].operators)
    assert_same_outputs(reference, model, runtime_names=("litert",))


def test_quantized_weights_are_left_alone():
    """Near-miss: dynamic-range int8 weights (LiteRT's hybrid numerics) are not hoisted."""
    _, records = run("k3_lstm_dynrange", HOIST, target="litert")
    assert not changed(records, "hoist-input-projection")


def test_second_run_changes_nothing():
    assert_second_run_changes_nothing("k3_custom_cell", HOIST, "litert")


def test_wrong_proof_refuses(monkeypatch):
    """If the hoisted values disagreed with the per-step ones, nothing would be rewritten."""
    from tflgraph.passes import hoist_input_projection as mod

    monkeypatch.setattr(mod, "RTOL", -1.0)  # no tolerance can be met
    model, records = run("k3_gru", HOIST, target="litert")
    assert not changed(records, "hoist-input-projection")
    assert any("not proved" in e for r in records for e in r.explanations)
    assert np.all(
        [o.type != "RESHAPE" or o.outputs[0].shape != (10, 1, 48) for o in model.main.operators]
    )


def test_hoist_that_carries_less_runs_for_tflm_too():
    """An LSTM loop with F = 40 inputs and 4u = 32 projected values per step (the benchmark's
    Keras-3 style builder, kept a loop): hoisting shrinks what TFLM copies, so target any
    hoists; the [T, B, F] sequence is no longer carried."""
    data = keras_lstm_loop(10, 40, 8, batch=2)
    model, records = run(tflgraph.load(data), HOIST)
    assert changed(records, "hoist-input-projection")
    op, _ = body_of(model)
    assert [t.shape for t in op.inputs if len(t.shape) == 3 and t.shape[0] == 10] == [(10, 2, 32)]
    assert_same_outputs(data, model)
