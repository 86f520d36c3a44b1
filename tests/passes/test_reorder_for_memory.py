"""reorder-for-memory: independent branches run in the order with the smallest planner peak;
TFLM itself measures the smaller arena, and the outputs are bit-identical in LiteRT and TFLM,
invoke after invoke without reset."""

from __future__ import annotations

import pytest
from helpers import assert_same_outputs, changed, run

import tflgraph
from tflgraph.pipeline import resolve
from tflgraph.runtime import planner, runtimes
from tflgraph.runtime.arena import footprints

WITHOUT = [p for p in resolve("default") if p != "reorder-for-memory"]


@pytest.mark.parametrize("name", ["k3_bilstm", "tfk_bilstm"])
def test_bidirectional_layer_runs_one_direction_first(name):
    """The converter reverses the input first, so x, its reverse and the first direction's
    sequence are alive together; reordered, the forward direction runs before the reverse."""
    before, _ = run(name, WITHOUT, "tflm")
    model, records = run(tflgraph.load(tflgraph.to_bytes(before)), ["reorder-for-memory"], "tflm")
    assert changed(records, "reorder-for-memory")
    assert planner.peak(model.main) < planner.peak(before.main)
    types = [op.type for op in model.main.operators]
    assert types.index("REVERSE_V2") > types.index("UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert_same_outputs(before, model, exact=True)
    if runtimes.available("tflm"):  # TFLM's own count: 256 bytes less on both fixtures
        a, b = footprints([tflgraph.to_bytes(before), tflgraph.to_bytes(model)])
        assert b.arena <= a.arena - 256


@pytest.mark.parametrize("name", ["k3_lstm_big", "dead_residual", "k3_seq2seq"])
def test_nothing_to_gain_keeps_the_order(name):
    """A chain, the chunks of one LSTM (they share state tensors), a residual block whose
    order is already the best: left as they are, and a second run changes nothing."""
    before, _ = run(name, WITHOUT, "tflm")
    data = tflgraph.to_bytes(before)
    model, records = run(tflgraph.load(data), ["reorder-for-memory"], "tflm")
    assert not changed(records, "reorder-for-memory") and tflgraph.to_bytes(model) == data
