"""Fixtures from onnx2tf (fixtures/generate.py --python-onnx): ONNX LSTM graphs built with
onnx.helper (ONNX gate order i|o|f|c, separate input and recurrent biases, zero initial
states), converted by onnx2tf 1.28 into one tf_keras RNN WHILE loop per direction: one LESS in
cond, gates as MatMul + SPLIT with the biases added per gate after the SPLIT, a dynamic-shape
accumulator, REVERSE_V2 around the backward direction. fuse-lstm recognises the step by
evaluation. Every comparison is with onnxruntime's outputs stored at generation time."""

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


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_made_by_onnx2tf_with_stored_onnxruntime_outputs(name):
    entry = manifest()[name]
    assert entry["converter"] == "onnx2tf" and entry["versions"]["onnx2tf"]
    assert entry["runtime_check"]["max_abs_diff"] < 1e-6  # tf.lite.Interpreter at generation
    ops = tflgraph.load(fixture(name)).op_counts()
    assert ops["WHILE"] == DIRECTIONS[name] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert ops.get("REVERSE_V2", 0) == 2 * (DIRECTIONS[name] - 1)  # input and output, backward


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_interpreter_reproduces_onnxruntime_and_tflm_does_not(name):
    """The reference interpreter runs the original as onnxruntime does; TFLM does not (its
    dynamic-shape accumulator): h = o * tanh(c) is bounded by 1, TFLM's is not."""
    inputs, want = tf_reference(name)
    for a, b in zip(want, evaluate(tflgraph.load(fixture(name)), inputs)):
        assert_equal_values(a, b)
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
