"""Fixtures from an older converter: Keras 2 models converted by TF 2.15 (fixtures/generate.py
--python-tf215), the form of most published recurrent models. The batch-None ones keep their
loop outputs in Flex TensorLists (TF 2.15 writes the list's length and the sequence output's
time axis as -1, and stores [1, 1, 16] for a [1, 10, 16] output); the fixed-batch LSTM is the
converter's own UNIDIRECTIONAL_SEQUENCE_LSTM. Every comparison is with the Keras outputs stored
at generation time (and checked there against TF 2.15's tf.lite.Interpreter with Flex)."""

from __future__ import annotations

import pytest
from helpers import (
    assert_equal_values,
    assert_gives_tf_reference,
    fixture,
    manifest,
    tf_reference,
    tflgraph_cli,
)

import tflgraph
from tflgraph.reference.interpreter import evaluate
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import shape_problems, unsupported_ops

LISTS = {"CUSTOM:FlexTensorListReserve", "CUSTOM:FlexTensorListSetItem"}
LISTS |= {"CUSTOM:FlexTensorListStack"}
# fixture -> (Flex ops of the original, ops counted after optimize --target tflm, explain lines)
FLEX = {
    "k2_lstm_flex_bnone_tf215": (
        LISTS,
        {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "WHILE": 0},
        ["[fuse-lstm] WHILE 'while': T=10 F=8 u=16 B=1 tanh -> UNIDIRECTIONAL_SEQUENCE_LSTM"],
    ),
    # a GRU is no LSTM: a static loop writing a [10, 1, 16] buffer row by row
    "k2_gru_seq_flex_bnone_tf215": (
        LISTS,
        {"WHILE": 1, "DYNAMIC_UPDATE_SLICE": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 0},
        ["[fuse-lstm] WHILE 'while': not an LSTM step: 1 sequence(s) and 1 state(s), want 1 and 2"],
    ),
    # both directions share one Reserve; the backward one reads a REVERSE_V2 of the input
    "k2_bilstm_flex_bnone_tf215": (
        LISTS,
        {"UNIDIRECTIONAL_SEQUENCE_LSTM": 2, "WHILE": 0, "REVERSE_V2": 1},
        [
            "[fuse-lstm] WHILE 'while': T=10 F=8 u=16 B=1 tanh -> UNIDIRECTIONAL_SEQUENCE_LSTM",
            "[fuse-lstm] WHILE 'while6': T=10 F=8 u=16 B=1 tanh -> UNIDIRECTIONAL_SEQUENCE_LSTM",
        ],
    ),
}
FUSED = "k2_lstm_tf215"
ALL = sorted(FLEX) + [FUSED]


@pytest.mark.parametrize("name", ALL)
def test_made_by_tf215_with_stored_keras_outputs(name):
    entry = manifest()[name]
    assert entry["converter"] == "tf2.15" and entry["versions"]["tensorflow"].startswith("2.15.")
    assert entry["runtime_check"]["max_abs_diff"] < 1e-6  # TF 2.15's interpreter, Flex linked


@pytest.mark.parametrize("name", ALL)
def test_loads_round_trips_and_interpreter_reproduces_keras(name):
    inputs, want = tf_reference(name)
    data = tflgraph.to_bytes(tflgraph.load(fixture(name)))
    again = tflgraph.load(data)
    assert tflgraph.to_bytes(again) == data
    assert again.op_counts() == tflgraph.load(fixture(name)).op_counts()
    assert {k for k in again.op_counts() if k.startswith("CUSTOM:")} == FLEX.get(name, (set(),))[0]
    got = evaluate(again, inputs)
    assert len(got) == len(want)
    for a, b in zip(want, got):
        assert_equal_values(a, b)


@pytest.mark.parametrize("name", sorted(FLEX))
def test_optimize_for_tflm_lowers_the_lists_and_runs_as_keras(name, tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture(name), "-o", out, "--target", "tflm", "--explain")
    assert done.returncode == 0, done.stderr
    flex, counts, explained = FLEX[name]
    for line in explained:
        assert line in done.stdout.splitlines() + done.stderr.splitlines()
    model = tflgraph.load(out)
    ops = model.op_counts()
    assert not any(k.startswith("CUSTOM:") for k in ops)
    assert {k: ops.get(k, 0) for k in counts} == counts
    assert unsupported_ops(model, "tflm") == {} and shape_problems(model)["dynamic"] == []
    assert_gives_tf_reference(out, name)  # LiteRT and TFLM, 3 invokes without reset


def test_converters_fused_lstm_keeps_state_across_invokes():
    """TF 2.15's own UNIDIRECTIONAL_SEQUENCE_LSTM holds h and c in variable tensors: the first
    invoke (and every invoke after a reset) gives the Keras outputs, the next ones without a
    reset carry the state on. optimize --target tflm leaves the model as it is."""
    inputs, want = tf_reference(FUSED)
    data = fixture(FUSED).read_bytes()
    model = tflgraph.load(data)
    tflgraph.optimize(model, "default", target="tflm")
    assert model.op_counts() == {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "STRIDED_SLICE": 1}
    for rt in ("litert", "tflm"):
        for blob in (data, tflgraph.to_bytes(model)):
            runs = runtimes.run_isolated(blob, [inputs] * 2, rt, modes=("reset", "no-reset"))
            for k, got in enumerate(runs["reset"]):
                assert_equal_values(want[0], got[0], where=f"{rt} reset invoke {k}")
            assert_equal_values(want[0], runs["no-reset"][0][0], where=f"{rt} first invoke")
            with pytest.raises(AssertionError):
                assert_equal_values(want[0], runs["no-reset"][1][0])
