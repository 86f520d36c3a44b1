"""fuse-lstm.reset_states: the fused LSTMs a converter wrote (tf_keras, TF 2.15 with a fixed
batch) keep their states across invokes, unlike the Keras model; with the option they start
from zeros every invoke, so LiteRT and TFLM give the Keras outputs invoke after invoke."""

from __future__ import annotations

import pytest
from helpers import (
    assert_equal_values,
    assert_gives_tf_reference,
    changed,
    fixture,
    outputs_in,
    tflgraph_cli,
)

import tflgraph
from tflgraph.pipeline import run_passes

RESET = {"fuse-lstm": {"reset_states": True}}


def reset(name: str, options=RESET):
    model = tflgraph.load(fixture(name))
    records = run_passes(model, ["fuse-lstm", "cleanup"], check_each=True, options=options)
    return model, records


def test_the_converters_fused_lstm_gives_keras_outputs_on_the_first_invoke_only():
    with pytest.raises(AssertionError, match="invoke 1"):
        assert_gives_tf_reference(tflgraph.load(fixture("k2_lstm_tf215")), "k2_lstm_tf215")


def test_reset_states_gives_the_keras_outputs_invoke_after_invoke():
    model, records = reset("k2_lstm_tf215")
    assert changed(records, "fuse-lstm")
    stats = next(r.stats for r in records if r.name == "fuse-lstm")
    assert stats["states_reset"] == 2 and model.op_counts()["FILL"] == 2
    assert_gives_tf_reference(model, "k2_lstm_tf215", invokes=4)


@pytest.mark.parametrize("name", ["tfk_lstm_fused_seq", "tfk_bilstm"])
def test_each_invoke_equals_the_original_after_a_reset(name):
    model, _ = reset(name)
    for rt in ("litert", "tflm"):
        want = outputs_in(fixture(name), rt, reset=True)
        got = outputs_in(model, rt)  # no reset: the model resets itself
        for k, (w, g) in enumerate(zip(want, got)):
            for j, (a, b) in enumerate(zip(w, g)):
                assert_equal_values(a, b, where=f"{rt} invoke {k} output {j}")


def test_off_by_default_and_a_second_run_changes_nothing():
    _, records = reset("k2_lstm_tf215", options={})
    assert not changed(records, "fuse-lstm")
    model, _ = reset("k2_lstm_tf215")
    again = tflgraph.load(tflgraph.to_bytes(model))
    records = run_passes(again, ["fuse-lstm"], options=RESET)
    assert not changed(records, "fuse-lstm")


def test_optimize_verifies_it_with_a_reset_between_samples(tmp_path):
    out = tmp_path / "out.tflite"
    args = ["optimize", str(fixture("k2_lstm_tf215")), "-o", str(out)]
    done = tflgraph_cli(*args, "--pass-option", "fuse-lstm.reset_states=true")
    assert done.returncode == 0, done.stderr
    assert "with a reset between samples" in done.stdout
    assert "2 fused LSTM state(s) now zero every invoke" in done.stdout
    assert_gives_tf_reference(tflgraph.load(out), "k2_lstm_tf215")


def test_the_objective_never_undoes_what_the_option_asks_for(tmp_path):
    """tfk_lstm_fused_seq: the zeroing FILLs cost arena and file, so the default objective
    refuses the pipeline's result; it writes the first result with the states reset (never the
    stateful input, which the check, resetting between samples, would also pass)."""
    name, out = "tfk_lstm_fused_seq", tmp_path / "out.tflite"
    args = ["optimize", str(fixture(name)), "-o", str(out)]
    done = tflgraph_cli(*args, "--pass-option", "fuse-lstm.reset_states=true")
    assert done.returncode == 0, done.stderr
    assert "the first with what the pass options ask for" in done.stdout, done.stdout
    assert "2 fused LSTM state(s) now zero every invoke" in done.stdout
    for rt in ("litert", "tflm"):
        want = outputs_in(fixture(name), rt, reset=True)
        got = outputs_in(out, rt)  # no reset: the written model resets itself
        for k, (w, g) in enumerate(zip(want, got)):
            for j, (a, b) in enumerate(zip(w, g)):
                assert_equal_values(a, b, where=f"{rt} invoke {k} output {j}")
