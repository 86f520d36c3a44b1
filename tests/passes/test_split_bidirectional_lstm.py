"""split-bidirectional-lstm: BIDIRECTIONAL_SEQUENCE_LSTM (LiteRT only; onnx2tf 2.x writes it for
a bidirectional ONNX LSTM) becomes a forward and a backward UNIDIRECTIONAL_SEQUENCE_LSTM that
TFLM runs, with the original's outputs in LiteRT and TFLM and onnxruntime's stored outputs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    as_bytes,
    assert_equal_values,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
    tf_reference,
    tflgraph_cli,
)
from modelbuild import bidi_lstm_operands, single_op

import tflgraph
from tflgraph.io.schema import new_options
from tflgraph.reference.interpreter import evaluate
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

BILSTM = "onnx_bilstm_onnx2tf2"
PASSES = ["split-bidirectional-lstm", "cleanup"]


def outputs(model, runtime: str, feeds: list, mode: str = "no-reset") -> list:
    """Per invoke, the outputs for `feeds` in a row (LiteRT's builtin kernels: XNNPACK gives
    a reader of a variable state the value from before the LSTM ran)."""
    data = as_bytes(model)
    kernels = "builtin" if runtime == "litert" else "default"
    return runtimes.run_isolated(data, feeds, runtime, 60, (mode,), kernels)[mode]


def assert_equal_runs(want: list, got: list, where: str) -> None:
    assert len(want) == len(got)
    for k, (w, g) in enumerate(zip(want, got)):
        for j, (a, b) in enumerate(zip(w, g)):
            assert_equal_values(a, b, where=f"{where} invoke {k} output {j}")


def seeded_feeds(model, n: int = 4) -> list:
    rng = np.random.default_rng(0)
    return [[rng.uniform(-1, 1, t.shape).astype(np.float32) for t in model.main.inputs]] * n


def test_the_fixture_is_onnx2tf_2x_output_that_tflm_cannot_run():
    model = tflgraph.load(fixture(BILSTM))
    assert model.op_counts()["BIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert "BIDIRECTIONAL_SEQUENCE_LSTM" in unsupported_ops(model, "tflm")
    with pytest.raises(runtimes.RuntimeUnavailable, match="BIDIRECTIONAL_SEQUENCE_LSTM"):
        outputs(fixture(BILSTM), "tflm", seeded_feeds(model, 1))
    inputs, want = tf_reference(BILSTM)  # the interpreter reproduces onnxruntime
    for a, b in zip(want, evaluate(model, inputs)):
        assert_equal_values(a, b)


@pytest.mark.parametrize("target", ["tflm", "any"])
def test_optimize_splits_it_with_the_originals_and_onnxruntimes_outputs(target, tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture(BILSTM), "-o", out, "--target", target)
    assert done.returncode == 0, done.stderr
    model = tflgraph.load(out)
    ops = model.op_counts()
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2 and ops["REVERSE_V2"] == 2
    assert "BIDIRECTIONAL_SEQUENCE_LSTM" not in ops and not unsupported_ops(model, "tflm")
    assert "SPLIT" not in ops  # onnx2tf's SPLIT of the merged output reads fw and bw
    original = tflgraph.load(fixture(BILSTM))
    feeds = seeded_feeds(original)  # the same input 4 times: the state carries over
    want = outputs(fixture(BILSTM), "litert", feeds)
    for rt in ("litert", "tflm"):
        assert_equal_runs(want, outputs(out, rt, feeds), f"{rt} against LiteRT's original")
    # onnx2tf's zero states are variable tensors without a producer: the file (original and
    # split alike) carries the state into the next invoke, and equals onnxruntime after a reset
    inputs, onnxruntime = tf_reference(BILSTM)
    for rt in ("litert", "tflm"):
        assert_equal_runs([onnxruntime] * 3, outputs(out, rt, [inputs] * 3, "reset"), rt)
        carried = outputs(out, rt, [inputs] * 2)[1][0]
        assert np.abs(carried - onnxruntime[0]).max() > 1e-2


def test_reset_states_gives_onnxruntimes_outputs_invoke_after_invoke(tmp_path):
    out = tmp_path / "out.tflite"
    option = "split-bidirectional-lstm.reset_states=true"
    done = tflgraph_cli("optimize", fixture(BILSTM), "-o", out, "--pass-option", option)
    assert done.returncode == 0, done.stderr
    assert tflgraph.load(out).op_counts()["FILL"] == 4
    inputs, onnxruntime = tf_reference(BILSTM)
    for rt in ("litert", "tflm"):
        assert_equal_runs([onnxruntime] * 3, outputs(out, rt, [inputs] * 3), rt)


def test_litert_keeps_the_op():
    model, records = run(BILSTM, PASSES, target="litert")
    assert not changed(records, "split-bidirectional-lstm")
    assert "BIDIRECTIONAL_SEQUENCE_LSTM" in model.op_counts()


def test_second_run_changes_nothing():
    assert_second_run_changes_nothing(BILSTM, PASSES, target="tflm")


def bilstm(time_major: bool, merge: bool, peepholes: bool = False):
    rng = np.random.default_rng(1)
    shape = (6, 2, 3) if time_major else (2, 6, 3)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    options = new_options(
        "BidirectionalSequenceLSTMOptions",
        fused_activation_function=4,
        merge_outputs=merge,
        time_major=time_major,
    )
    operands = [x, *bidi_lstm_operands(rng, peepholes=peepholes)]
    return single_op("BIDIRECTIONAL_SEQUENCE_LSTM", operands, options, n_outputs=2 - merge)


@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("merge", [True, False])
def test_both_output_forms_and_layouts_split_with_the_originals_outputs(time_major, merge):
    """Against the original on the reference interpreter (its kernel is LiteRT's: tests/
    test_interpreter.py) and in LiteRT, except merged batch-major outputs: LiteRT's kernel
    then gives results that change with what its memory held before (0.8 off in one
    process, exact in a fresh one), while the split gives the exact ones every time."""
    model, feeds = bilstm(time_major, merge)
    original = tflgraph.to_bytes(model)
    state: dict = {}
    want = [evaluate(model, feeds, state) for _ in range(3)]
    if time_major or not merge:
        assert_equal_runs(want, outputs(original, "litert", [feeds] * 3), "LiteRT's original")
    model, records = run(model, PASSES, target="tflm")
    assert changed(records, "split-bidirectional-lstm")
    assert model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2
    for rt in ("litert", "tflm"):
        assert_equal_runs(want, outputs(model, rt, [feeds] * 3), rt)


def test_peepholes_stay_with_the_reason():
    model, _ = bilstm(False, True, peepholes=True)
    model, records = run(model, PASSES, target="tflm")
    assert not changed(records, "split-bidirectional-lstm")
    said = "\n".join(line for r in records for line in r.explanations)
    assert "peepholes or a projection" in said


def test_a_final_cell_state_read_after_the_op_stays_with_the_reason():
    """The final c is no output of the op (the final h is: its readers move to the last
    step), and reading the variable after the new LSTMs would depend on op order."""
    model, _ = bilstm(True, True)
    sg = model.main
    (op,) = sg.operators
    c = sg.new_tensor("final_c", op.inputs[36].shape)
    sg.add_op("RESHAPE", [op.inputs[36]], [c], {"new_shape": list(c.shape)})
    sg.outputs.append(c)
    model, records = run(model, PASSES, target="tflm")
    assert not changed(records, "split-bidirectional-lstm")
    said = "\n".join(line for r in records for line in r.explanations)
    assert "is read by RESHAPE other than as a final h" in said


def test_the_forward_lstm_of_onnx2tf_2x_runs_in_tflm_with_onnxruntimes_outputs(tmp_path):
    """onnx2tf 2.x's forward LSTM is already an UNIDIRECTIONAL_SEQUENCE_LSTM (nothing to split)
    with the same producer-free states: equal to onnxruntime after a reset, in both runtimes."""
    name, out = "onnx_lstm_onnx2tf2", tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture(name), "-o", out, "--target", "tflm")
    assert done.returncode == 0, done.stderr
    model = tflgraph.load(out)
    assert model.op_counts()["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert not unsupported_ops(model, "tflm")
    inputs, onnxruntime = tf_reference(name)
    for rt in ("litert", "tflm"):
        assert_equal_runs([onnxruntime] * 3, outputs(out, rt, [inputs] * 3, "reset"), rt)
