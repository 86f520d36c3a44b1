"""Fixtures from the oldest converter: Keras 2 models converted by TF 2.4 (fixtures/generate.py
--python-tf24). TF 2.4 lowers the loops' TensorLists itself, in its own spelling: the
accumulator row is written with EXPAND_DIMS (batch None) or RESHAPE into a CONCATENATION that a
CAST to the same type follows, and with batch None the trip count is a loop operand holding
SHAPE(x)[1]. TFLM mis-runs those dynamic-shape loops; after optimize the LSTMs are fused and
the GRU is a static loop. Every comparison is with the Keras outputs stored at generation."""

from __future__ import annotations

import pytest
from helpers import assert_equal_values, assert_gives_tf_reference, fixture, manifest, tf_reference

import tflgraph
from tflgraph.pipeline import run_passes
from tflgraph.reference.interpreter import evaluate
from tflgraph.rnn.loops import analyze_loop, while_loops

# fixture -> ops counted after optimize (every target)
AFTER = {
    "k2_lstm_bnone_tf24": {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "WHILE": 0},
    "k2_bilstm_cell_seq_tf24": {"UNIDIRECTIONAL_SEQUENCE_LSTM": 2, "WHILE": 0},
    "k2_gru_seq_tf24": {"WHILE": 1, "DYNAMIC_UPDATE_SLICE": 1, "CAST": 0},
}


@pytest.mark.parametrize("name", sorted(AFTER))
def test_made_by_tf24_with_stored_keras_outputs(name):
    entry = manifest()[name]
    assert entry["converter"] == "tf2.4" and entry["versions"]["tensorflow"].startswith("2.4.")
    assert entry["runtime_check"]["max_abs_diff"] < 1e-6
    inputs, want = tf_reference(name)
    for a, b in zip(want, evaluate(tflgraph.load(fixture(name)), inputs)):
        assert_equal_values(a, b)


@pytest.mark.parametrize("name", sorted(AFTER))
def test_the_loops_are_seen_with_their_accumulator(name):
    """The CAST after the CONCATENATION and the EXPAND_DIMS row are the accumulator idiom; the
    batch-None trip count is read once freeze-shapes and fold-constants made it a constant."""
    model = tflgraph.load(fixture(name))
    run_passes(model, ["freeze-shapes", "fold-constants"])
    for op in while_loops(model.main):
        why: list[str] = []
        loop = analyze_loop(model.main, op, why.append)
        assert loop is not None, why
        assert loop.trip_count == 10 and loop.acc_kind == "sequence"


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
@pytest.mark.parametrize("name", sorted(AFTER))
def test_optimize_fuses_the_lstms_and_runs_as_keras(name, target):
    model = tflgraph.load(fixture(name))
    tflgraph.optimize(model, "default", target=target)
    ops = model.op_counts()
    runtimes = ("litert", "tflm")
    if target == "litert" and name == "k2_lstm_bnone_tf24":
        # for LiteRT the batch stays None (it resizes inputs), and the fused op needs it static
        want, runtimes = {"UNIDIRECTIONAL_SEQUENCE_LSTM": 0, "WHILE": 1}, ("litert",)
    else:
        want = AFTER[name]
    assert {k: ops.get(k, 0) for k in want} == want
    assert_gives_tf_reference(model, name, runtimes)  # 3 invokes without reset
