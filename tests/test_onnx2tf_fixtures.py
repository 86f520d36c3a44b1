"""Fixtures from onnx2tf (fixtures/generate.py --python-onnx): ONNX LSTM and GRU graphs built
with onnx.helper (ONNX gate orders i|o|f|c and z|r|h, separate input and recurrent biases, zero
initial states), converted by onnx2tf 1.28 into one tf_keras RNN WHILE loop per direction: one
LESS in cond, gates as MatMul + SPLIT (LSTM) or one MatMul per gate (GRU) with the biases added
per gate, a dynamic-shape accumulator, REVERSE_V2 around the backward direction. fuse-lstm
recognises the LSTM step by evaluation; the GRU, named by evaluation, becomes a static loop.
Every comparison is with onnxruntime's outputs stored at generation time."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_equal_values,
    assert_gives_litert_reference,
    assert_gives_tf_reference,
    fixture,
    manifest,
    outputs_in,
    tf_reference,
    tflgraph_cli,
)

import tflgraph
from tflgraph.pipeline import run_passes
from tflgraph.reference.interpreter import evaluate

DIRECTIONS = {"onnx_lstm_onnx2tf": 1, "onnx_bilstm_onnx2tf": 2}
GRU = "onnx_gru_onnx2tf"
BNONE = "onnx_lstm_bnone_onnx2tf"  # batch None: onnx2tf keeps the loop outputs in Flex lists


@pytest.mark.parametrize("name", sorted(DIRECTIONS) + [GRU])
def test_made_by_onnx2tf_with_stored_onnxruntime_outputs(name):
    entry = manifest()[name]
    assert entry["converter"] == "onnx2tf" and entry["versions"]["onnx2tf"]
    assert entry["runtime_check"]["max_abs_diff"] < 1e-6  # tf.lite.Interpreter at generation
    ops = tflgraph.load(fixture(name)).op_counts()
    assert ops["WHILE"] == DIRECTIONS.get(name, 1) and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert ops.get("REVERSE_V2", 0) == 2 * (DIRECTIONS.get(name, 1) - 1)  # around the backward


@pytest.mark.parametrize("name", sorted(DIRECTIONS) + [GRU, BNONE])
def test_interpreter_reproduces_onnxruntime_and_tflm_does_not(name):
    """The reference interpreter runs the original as onnxruntime does; TFLM does not (its
    dynamic-shape accumulator): h = o * tanh(c) is bounded by 1, TFLM's LSTM output is not
    (and TFLM hangs on the GRU loop, as on Keras' GRU loops: not run here)."""
    inputs, want = tf_reference(name)
    for a, b in zip(want, evaluate(tflgraph.load(fixture(name)), inputs)):
        assert_equal_values(a, b)
    if name in DIRECTIONS:
        assert np.abs(outputs_in(fixture(name), "tflm", samples=1)[0][0]).max() > 1


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_optimize_fuses_one_lstm_per_direction_with_onnxruntimes_outputs(name, target, tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture(name), "-o", out, "--target", target, "--explain")
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert said.count("LSTM step recognised by evaluation") == DIRECTIONS[name], said
    model = tflgraph.load(out)
    ops = model.op_counts()
    assert "WHILE" not in ops and ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == DIRECTIONS[name]
    assert len(model.subgraphs) == 1
    assert_gives_tf_reference(out, name, invokes=3)  # LiteRT and TFLM, without reset
    assert_gives_litert_reference(fixture(name), out)  # random inputs, 5 invokes
    again = tflgraph.load(out)
    assert not any(r.changed for r in run_passes(again, ["fuse-lstm"], target=target))


@pytest.mark.parametrize("target", ["any", "tflm"])
def test_the_gru_is_named_and_becomes_a_static_loop_with_onnxruntimes_outputs(target, tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture(GRU), "-o", out, "--target", target, "--explain")
    assert done.returncode == 0, done.stderr
    assert "a GRU step (recognised by evaluation)" in done.stdout + done.stderr
    ops = tflgraph.load(out).op_counts()
    assert ops["WHILE"] == 1 and ops["DYNAMIC_UPDATE_SLICE"] == 1
    assert_gives_tf_reference(out, GRU, invokes=3)  # LiteRT and TFLM, without reset


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
def test_batch_none_lists_are_lowered_and_the_lstm_fused_with_onnxruntimes_outputs(
    target, tmp_path
):
    """A PyTorch-style export with batch N (zero states from Shape(x)): onnx2tf writes Flex
    TensorList ops that neither runtime runs; frozen to batch 1 they are lowered and the loop
    fused (LiteRT keeps batch None unless told: --batch 1)."""
    assert "CUSTOM:FlexTensorListReserve" in tflgraph.load(fixture(BNONE)).op_counts()
    out = tmp_path / "out.tflite"
    args = ["--batch", "1"] if target == "litert" else []
    done = tflgraph_cli("optimize", fixture(BNONE), "-o", out, "--target", target, *args)
    assert done.returncode == 0, done.stderr
    ops = tflgraph.load(out).op_counts()
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "WHILE" not in ops
    assert not any(k.startswith("CUSTOM:") for k in ops)
    assert_gives_tf_reference(out, BNONE, invokes=3)  # LiteRT and TFLM, without reset
