"""lstm-output-from-state: a model output that is a fused LSTM's last step reads the op's
output-state tensor; the small Keras 3 LSTM then needs no more TFLM arena than the
converter's own fused LSTM of the same shape (issue 15 point 4), with the same outputs in
LiteRT and TFLM, invoke after invoke without reset."""

from __future__ import annotations

import pytest
from helpers import assert_same_outputs, changed, fixture, run

import tflgraph
from tflgraph.pipeline import resolve
from tflgraph.runtime import runtimes
from tflgraph.runtime.arena import footprints

PASSES = ["fuse-lstm", "lstm-output-from-state"]


def test_output_reads_the_state_with_the_same_name_and_values():
    original = tflgraph.load(fixture("k3_lstm"))
    name = original.main.outputs[0].name
    model, records = run("k3_lstm", PASSES, "tflm")
    assert changed(records, "lstm-output-from-state")
    out = model.main.outputs[0]
    assert out.is_variable and out.name == name and "STRIDED_SLICE" not in model.op_counts()
    assert model.signature_defs[0].outputs[0][1] is out
    assert_same_outputs(original, model, exact=False)


@pytest.mark.skipif(not runtimes.available("tflm"), reason="needs tflite-micro")
def test_small_lstm_needs_at_most_the_converters_arena():
    """k3_lstm (T=10 F=8 u=16) after the default pipeline against tfk_lstm_fused (the same
    shape, converted by tf_keras to the fused op): 3,360 <= 3,456 bytes; fuse-lstm alone
    left 3,632 (its FILL reset ops, and the STRIDED_SLICE this pass removes)."""
    model, _ = run("k3_lstm", resolve("default"), "tflm")
    fused_only, _ = run("k3_lstm", ["fuse-lstm"], "tflm")
    ours, before, converter = footprints(
        [tflgraph.to_bytes(model), tflgraph.to_bytes(fused_only), fixture("tfk_lstm_fused")
         .read_bytes()]
    )  # fmt: skip
    assert ours.arena <= converter.arena < before.arena


@pytest.mark.parametrize(
    "name, passes, why",
    [
        ("tfk_lstm_fused", ["lstm-output-from-state"], "not reset by an op every invoke"),
        ("k3_dense_lstm", PASSES, None),  # the last step feeds a Dense layer: an op reads it
    ],
)
def test_left_alone(name, passes, why):
    model, records = run(name, passes, "tflm")
    assert not changed(records, "lstm-output-from-state")
    assert "STRIDED_SLICE" in model.op_counts()
    said = [x for r in records if r.name == "lstm-output-from-state" for x in r.explanations]
    assert why is None or any(why in x for x in said), said
