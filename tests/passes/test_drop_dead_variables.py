"""drop-dead-variables: a resource variable read only to compute its own next value (Keras 3's
dropout seed generator) is removed with its CALL_ONCE initialiser; a variable whose value
reaches an output stays."""

from __future__ import annotations

from helpers import assert_same_outputs, fixture

import tflgraph
from tflgraph.pipeline import run_passes

VARIABLE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}


def drop(model):
    records = run_passes(model, ["drop-dead-variables", "cleanup"], check_each=True, explain=True)
    return model, [e for r in records for e in r.explanations]


def test_seed_generator_is_removed_and_outputs_are_unchanged():
    model, why = drop(tflgraph.load(fixture("k3_lstm_dropout")))
    assert not VARIABLE_OPS & set(model.op_counts())
    assert len(model.subgraphs) == 3  # main, cond, body: the CALL_ONCE subgraph is gone
    assert any("seed_generator" in w and "nothing reads it" in w for w in why), why
    assert_same_outputs(fixture("k3_lstm_dropout"), model, ("litert",))


def test_variable_that_reaches_an_output_stays():
    before = tflgraph.load(fixture("resource_vars")).op_counts()
    model, _ = drop(tflgraph.load(fixture("resource_vars")))
    assert model.op_counts() == before


def test_variable_whose_value_is_also_an_output_stays():
    model = tflgraph.load(fixture("k3_lstm_dropout"))
    read = model.main.ops_of_type("READ_VARIABLE")[0]
    model.main.outputs.append(read.outputs[0])
    before = model.op_counts()
    model, _ = drop(model)
    assert model.op_counts() == before
