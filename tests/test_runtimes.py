"""tflgraph.runtime.runtimes: the isolated worker (timeouts, crashes, reasons), the run modes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.runtime import runtimes

needs_both = pytest.mark.skipif(
    not (runtimes.available("litert") and runtimes.available("tflm")),
    reason="needs ai-edge-litert and tflite-micro",
)


def test_a_hanging_runtime_times_out(monkeypatch):
    monkeypatch.setattr(runtimes, "run_modes", lambda *a: time.sleep(30))
    start = time.perf_counter()
    with pytest.raises(runtimes.RuntimeUnavailable, match="did not finish within 0.5 s"):
        runtimes.run_isolated(b"", [], "litert", timeout=0.5)
    assert time.perf_counter() - start < 10


def test_a_crashing_runtime_is_reported(monkeypatch):
    monkeypatch.setattr(runtimes, "run_modes", lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(runtimes.RuntimeUnavailable, match="crashed"):
        runtimes.run_isolated(b"", [], "litert", timeout=30)


@needs_both
def test_the_reason_includes_what_the_runtime_printed():
    data = fixture("strings").read_bytes()
    with pytest.raises(runtimes.RuntimeUnavailable, match="HASHTABLE"):
        runtimes.run_isolated(data, [], "tflm")


@needs_both
def test_modes_keep_or_reset_variable_state():
    """The fused LSTM keeps h/c across invokes unless reset: the same input twice gives two
    different outputs without reset and the same output with one, in both runtimes."""
    data = fixture("tfk_lstm_fused").read_bytes()
    x = [np.full((1, 10, 8), 0.25, np.float32)]
    for rt in ("litert", "tflm"):
        got = runtimes.run_isolated(data, [x, x], rt)
        assert set(got) == set(runtimes.MODES)
        assert not np.array_equal(got["no-reset"][0][0], got["no-reset"][1][0])
        np.testing.assert_array_equal(got["reset"][0][0], got["reset"][1][0])
        np.testing.assert_array_equal(got["reset"][0][0], got["no-reset"][0][0])


def test_a_flex_model_is_refused_in_one_sentence_with_the_node():
    """LiteRT's refusal of a Select TF model glues a paragraph on linking the Flex delegate to
    the failing node ("...ops_selectNode number 0"); the reason says it in one sentence, and
    the same way through the child process."""
    data = fixture("k3_lstm_flex_bnone").read_bytes()
    feeds = [[np.zeros((1, 10, 8), np.float32)]]
    with pytest.raises(runtimes.RuntimeUnavailable) as direct:
        runtimes.Session(data, "litert")
    with pytest.raises(runtimes.RuntimeUnavailable) as isolated:
        runtimes.run_isolated(data, feeds, "litert")
    want = (
        "litert cannot load the model: it has Select TensorFlow (Flex) ops, which run only "
        "with the Flex delegate (Node number 0 (FlexTensorListReserve) failed to prepare)"
    )
    assert str(direct.value) == str(isolated.value) == want


def test_tflm_blocker_names_the_loop_subgraph_by_its_role():
    """A batch-None loop's cond has dynamic-shape tensors too: the reason calls it the cond."""
    from tflgraph.runtime.verify import tflm_blocker

    model = tflgraph.load(fixture("k2_lstm_flex_bnone_tf215"))
    (loop,) = model.main.ops_of_type("WHILE")
    cond = loop.option("cond_subgraph_index")
    assert any(t.is_dynamic for t in cond.tensors)
    assert tflm_blocker(model).startswith(f"WHILE cond {cond.name!r} has dynamic-shape tensors")


def test_glued_runtime_messages_are_split_into_sentences():
    glued = RuntimeError(
        "Quantization parameters has non-null scale but null zero_point.Tensor 43 has invalid "
        "quantization parameters.Quantization parameters has ..."
    )
    assert runtimes._first_line(glued) == (
        "Quantization parameters has non-null scale but null zero_point. Tensor 43 has invalid "
        "quantization parameters. Quantization parameters has ..."
    )


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_a_scalar_input_stays_a_scalar(runtime):
    """A 0-d input reaches the runtime as 0-d (np.ascontiguousarray would make it [1])."""
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x, y = sg.new_tensor("x", (), "float32"), sg.new_tensor("y", (), "float32")
    sg.inputs, sg.outputs = [x], [y]
    sg.add_op("TANH", [x], [y], None)
    session = runtimes.Session(tflgraph.to_bytes(model), runtime)
    (got,) = session.invoke([np.float32(0.5).reshape(())])
    assert got.shape == () and abs(float(got) - np.tanh(0.5)) < 1e-6
