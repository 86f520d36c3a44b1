"""chunk-sequence-lstm: a fused LSTM read only at its last step runs as fused LSTMs over
chunks of steps on one pair of state tensors; TFLM's arena shrinks (measured by TFLM), the
outputs stay bit-identical in LiteRT and TFLM, invoke after invoke without reset."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import assert_same_outputs, changed, fixture, run

import tflgraph
from tflgraph.pipeline import resolve
from tflgraph.runtime import runtimes
from tflgraph.runtime.arena import footprints
from tflgraph.runtime.runtimes import call_isolated

needs_tflm = pytest.mark.skipif(not runtimes.available("tflm"), reason="needs tflite-micro")
LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"


def fused(name: str, target: str = "tflm") -> tflgraph.Model:
    model, _ = run(name, resolve("default"), target)
    return model


def test_big_last_step_lstm_runs_in_chunks_with_identical_outputs():
    original = tflgraph.load(fixture("k3_lstm_big"))
    model, records = run("k3_lstm_big", ["fuse-lstm", "chunk-sequence-lstm"], "tflm")
    assert changed(records, "chunk-sequence-lstm")
    lstms = model.main.ops_of_type(LSTM)
    assert [op.inputs[0].shape[1] for op in lstms] == [13, 17, 20]
    assert model.op_counts()["SPLIT_V"] == 1
    first = lstms[0]
    for op in lstms:  # one pair of states, the same weight tensors
        assert op.inputs[18] is first.inputs[18] and op.inputs[19] is first.inputs[19]
        assert all(a is b for a, b in zip(op.inputs[1:18], first.inputs[1:18]))
    assert_same_outputs(original, model, samples=4)
    whole, _ = run("k3_lstm_big", ["fuse-lstm"], "tflm")
    assert_same_outputs(whole, model, samples=4, exact=True)  # bit-identical to one op


@needs_tflm
def test_chunked_arena_and_time_in_tflm():
    """Acceptance of issue 15 point 3, measured: the default pipeline's output needs at most
    0.6x the WHILE model's arena (0.593x: 22,064 of 37,184 bytes) and TFLM runs it within
    1.1x the fully fused model's time (best of interleaved rounds; measured 0.98-1.00x)."""
    src = fixture("k3_lstm_big").read_bytes()
    chunked = tflgraph.to_bytes(fused("k3_lstm_big"))
    whole, _ = run("k3_lstm_big", ["fuse-lstm"], "tflm")
    whole = tflgraph.to_bytes(whole)
    a_src, a_chunked, a_whole = (f.arena for f in footprints([src, chunked, whole]))
    assert a_chunked <= 0.6 * a_src < a_src < a_whole
    ratios = []
    for _ in range(3):  # the machine is shared: a disturbed measurement is taken again
        t_whole, t_chunked = call_isolated(_best_times, ([whole, chunked],), "tflm", 300)
        ratios.append(t_chunked / t_whole)
        if ratios[-1] <= 1.1:
            break
    assert min(ratios) <= 1.1, ratios


def _best_times(models: list[bytes], rounds: int = 20, invokes: int = 5) -> list[float]:
    """In a child: the best per-invoke time of each model over interleaved rounds."""
    its = [runtimes.Session(m, "tflm") for m in models]
    x = runtimes.random_inputs(its[0].inputs, np.random.default_rng(0))
    best = [float("inf")] * len(its)
    for _ in range(rounds):
        for i, s in enumerate(its):
            start = time.perf_counter()
            for _ in range(invokes):
                s.invoke(x)
            best[i] = min(best[i], (time.perf_counter() - start) / invokes)
    return best


def test_converter_fused_lstm_without_reset_chunks_too():
    """The converter's own fused LSTM keeps its state across invokes (no reset op): chunked,
    it carries the same state, invoke after invoke."""
    original = tflgraph.load(fixture("tfk_lstm_big_fused"))
    model, records = run("tfk_lstm_big_fused", ["chunk-sequence-lstm"], "tflm")
    assert changed(records, "chunk-sequence-lstm")
    assert_same_outputs(original, model, samples=3)


@pytest.mark.parametrize(
    "name, why",
    [
        ("k3_lstm", "no chunking lowers the predicted arena"),
        ("k3_lstm_seq", "the whole sequence is a model output"),
    ],
)
def test_left_alone(name, why):
    model, records = run(name, ["fuse-lstm", "chunk-sequence-lstm"], "tflm")
    assert not changed(records, "chunk-sequence-lstm")
    assert model.op_counts()[LSTM] == 1
    said = [x for r in records if r.name == "chunk-sequence-lstm" for x in r.explanations]
    assert any(why in x for x in said), said


def test_not_for_litert_and_a_second_run_changes_nothing():
    _, records = run("k3_lstm_big", ["fuse-lstm", "chunk-sequence-lstm"], "litert")
    assert not changed(records, "chunk-sequence-lstm")
    model, _ = run("k3_lstm_big", ["fuse-lstm", "chunk-sequence-lstm"], "tflm")
    before = tflgraph.to_bytes(model)
    _, records = run(model, ["chunk-sequence-lstm"], "tflm")
    assert not changed(records, "chunk-sequence-lstm") and tflgraph.to_bytes(model) == before
