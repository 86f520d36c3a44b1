"""strip-dead-channels on converter fixtures, judged in LiteRT and TFLM.

Each fixture has channels zeroed in Keras (fixtures/generate.py, section D); the expected
weight shapes follow from its description in fixtures/manifest.json.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_same_outputs, fixture, trust_construction

import tflgraph
from tflgraph.channels.layers import LAYER_TYPES
from tflgraph.passes.strip_dead_channels import StripDeadChannels
from tflgraph.pipeline import optimize, remove_dead_code


def strip(model):
    p = StripDeadChannels()
    changed = p.run(model)
    remove_dead_code(model)
    model.check()
    return changed, p.stats


def weight_shapes(model):
    """(op type, weight shape) of every layer of the main subgraph, in order."""
    return [
        (op.type[:4], op.inputs[1].shape) for op in model.main.operators if op.type in LAYER_TYPES
    ]


EXPECTED = {
    # 8 dead + 4 unused of d1's 32 units
    "dead_mlp": [("FULL", (20, 16)), ("FULL", (32, 20)), ("FULL", (10, 32))],
    # filters 1, 5, 13 go; filter 9 (constant 0.3) stays: c2 is a 3x3 SAME conv
    "dead_cnn": [("CONV", (13, 3, 3, 8)), ("CONV", (8, 3, 3, 13)), ("FULL", (10, 8))],
    # channel 2 (dead in both branches) goes; channel 5 (dead in branch a only) stays
    "dead_residual": [
        ("CONV", (8, 3, 3, 3)),
        ("CONV", (7, 3, 3, 8)),
        ("CONV", (7, 3, 3, 8)),
        ("FULL", (10, 7)),
    ],
    # c1 channels 1, 6 and dw channel 3 (so c1's filter 3 too) go
    "dead_depthwise": [
        ("CONV", (5, 3, 3, 3)),
        ("DEPT", (1, 3, 3, 5)),
        ("CONV", (8, 1, 1, 5)),
        ("FULL", (10, 8)),
    ],
    # concat channels 1, 4 (from a) and 6 (b's 0) go
    "dead_concat": [
        ("CONV", (4, 3, 3, 3)),
        ("CONV", (5, 3, 3, 3)),
        ("CONV", (8, 3, 3, 9)),
        ("FULL", (10, 8)),
    ],
    # l1's 6 constant units fold into l2's bias; l2's 4 constant units into l3's
    "dead_const_bias": [("FULL", (18, 16)), ("FULL", (12, 18)), ("FULL", (10, 12))],
    # 4 dead hidden units of 16: input and recurrent weights per gate
    "dead_tfk_lstm_fused": [("UNID", (12, 8)), ("FULL", (10, 12))],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_strips_dead_channels(name):
    model = tflgraph.load(fixture(name))
    changed, stats = strip(model)
    assert changed and stats["bytes_saved"] > 0
    assert weight_shapes(model) == EXPECTED[name]
    assert_same_outputs(fixture(name), model)
    assert not strip(model)[0], "a second run changed the model again"


def test_fused_lstm_slices_every_gate_and_state():
    model = tflgraph.load(fixture("dead_tfk_lstm_fused"))
    strip(model)
    (lstm,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    shapes = [None if t is None else t.shape for t in lstm.inputs]
    assert shapes[1:5] == [(12, 8)] * 4 and shapes[5:9] == [(12, 12)] * 4
    assert shapes[12:16] == [(12,)] * 4 and shapes[18:20] == [(1, 12)] * 2
    assert lstm.outputs[0].shape == (1, 10, 12)


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_int8", "pruned_tfmot", "k3_lstm"])
def test_models_without_dead_channels_are_left_alone(name):
    model = tflgraph.load(fixture(name))
    assert not strip(model)[0]


def zero_channels(model, channels):
    """cnn / cnn_int8 with conv filters `channels` zeroed (weights and bias) and the matching
    depthwise biases zeroed, through new constants: those channels are 0 after the dw."""
    sg = model.main
    conv, dw = sg.ops_of_type("CONV_2D")[0], sg.ops_of_type("DEPTHWISE_CONV_2D")[0]
    for op, index, axis in ((conv, 1, 0), (conv, 2, 0), (dw, 2, 0)):
        t = op.inputs[index]
        data = np.array(t.data, copy=True)
        np.moveaxis(data, axis, 0)[channels] = 0
        sg.set_input(op, index, sg.new_constant(data, t.name, quantization=t.quantization))
    remove_dead_code(model)
    return model


def assert_unchecked_round_is_refused(model):
    p = StripDeadChannels()
    p.explanations = []
    assert not p.run(model)
    assert any("cannot check" in line for line in p.explanations), p.explanations


@pytest.mark.parametrize("name", ["cnn", "cnn_int8"])
def test_flattening_reshape_and_per_channel_quantization(name, monkeypatch):
    zeroed = zero_channels(tflgraph.load(fixture(name)), [2, 5])
    model = zero_channels(tflgraph.load(fixture(name)), [2, 5])
    if name == "cnn_int8":  # no op of the round can be evaluated: refused, unless trusted
        assert_unchecked_round_is_refused(model)
        trust_construction(monkeypatch)
    assert strip(model)[0]
    assert weight_shapes(model) == [
        ("CONV", (6, 3, 3, 3)),
        ("DEPT", (1, 3, 3, 6)),
        ("FULL", (10, 384)),
    ]
    (reshape,) = model.main.ops_of_type("RESHAPE")
    assert list(reshape.inputs[1].data) == [1, 384]
    if name == "cnn_int8":
        conv, dw = (
            model.main.ops_of_type("CONV_2D")[0],
            model.main.ops_of_type("DEPTHWISE_CONV_2D")[0],
        )
        for t in (conv.inputs[1], conv.inputs[2], dw.inputs[1], dw.inputs[2]):
            assert len(t.quantization["scale"]) == 6 == len(t.quantization["zero_point"])
        want = np.delete(
            zeroed.main.ops_of_type("CONV_2D")[0].inputs[1].quantization["scale"], [2, 5]
        )
        np.testing.assert_array_equal(conv.inputs[1].quantization["scale"], want)
    assert_same_outputs(zeroed, model, exact=name == "cnn_int8")


def test_tfmot_model_keeps_shapes_and_outputs():
    model = tflgraph.load(fixture("pruned_tfmot"))
    optimize(model, "default")
    assert_same_outputs(fixture("pruned_tfmot"), model)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_strip_benchmark_fixtures(kind):
    model = tflgraph.load(fixture(f"strip_{kind}_50"))
    changed, stats = strip(model)
    assert changed
    assert_same_outputs(fixture(f"strip_{kind}_50"), model)


def test_default_pipeline_and_report(tmp_path):
    out, report = tmp_path / "o.tflite", tmp_path / "r.json"
    cmd = [
        sys.executable,
        "-m",
        "tflgraph",
        "optimize",
        str(fixture("dead_concat")),
        "-o",
        str(out),
        "--report",
        str(report),
        "--no-verify",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "[strip-dead-channels] functional_1/a_1/Relu (CONV_2D): removed 2 output" in run.stdout
    assert "weight bytes saved: 1,200" in run.stdout
    records = json.loads(report.read_text())["records"]
    stats = next(r["stats"] for r in records if r["pass"] == "strip-dead-channels")
    assert stats["bytes_saved"] == 1200
    assert stats["layers"]["functional_1/c_1/BiasAdd"]["in_channels"] == 3


def loop_shapes(model):
    """Weight shapes in the WHILE body and the shapes of the loop's carried operands."""
    (loop,) = model.main.ops_of_type("WHILE")
    body = loop.options["body_subgraph_index"]
    fcs = [op.inputs[1].shape for op in body.ops_of_type("FULLY_CONNECTED")]
    return fcs, [t.shape for t in loop.inputs[2:5]]


def test_keras3_lstm_loop_units_are_removed():
    model = tflgraph.load(fixture("dead_k3_lstm"))
    changed, stats = strip(model)
    assert changed
    assert loop_shapes(model) == ([(48, 12), (48, 8)], [(1, 1, 12), (1, 12), (1, 12)])
    assert weight_shapes(model) == [("FULL", (10, 12))]
    (loop,) = model.main.ops_of_type("WHILE")
    for sub in loop.subgraphs():
        assert [t.shape for t in sub.inputs][2:5] == [(1, 1, 12), (1, 12), (1, 12)]
    assert_same_outputs(fixture("dead_k3_lstm"), model)
    assert not strip(model)[0]


def test_loop_unit_with_a_nonzero_initial_state_stays():
    model = tflgraph.load(fixture("dead_k3_lstm"))
    (loop,) = model.main.ops_of_type("WHILE")
    c0 = np.zeros((1, 16), np.float32)
    c0[0, 2] = 1.0  # unit 2's cell state starts at 1: h != 0 although its gates are dead
    loop_c0 = model.main.new_constant(c0, "c0")
    model.main.set_input(loop, 4, loop_c0)
    remove_dead_code(model)
    original = tflgraph.to_bytes(model)
    assert strip(model)[0]
    assert loop_shapes(model) == ([(52, 13), (52, 8)], [(1, 1, 13), (1, 13), (1, 13)])
    assert_same_outputs(original, model)


def test_explain_names_the_channels_that_stay():
    model = tflgraph.load(fixture("dead_cnn"))
    p = StripDeadChannels()
    p.explanations = []
    p.run(model)
    assert p.explanations == [
        "'functional_1/c1_1/Relu': channel 7 (constant 0.3) stays: read by CONV_2D "
        "'functional_1/c2_1/Relu', which cannot fold the constant exactly"
    ]


def test_fused_lstm_unit_with_a_nonzero_cell_bias_stays():
    model = tflgraph.load(fixture("dead_tfk_lstm_fused"))
    (lstm,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    bias_c = np.array(lstm.inputs[14].data, copy=True)
    bias_c[2] = 0.5  # unit 2: g = tanh(0.5) != 0, so c and h grow although W, U rows are zero
    model.main.set_input(lstm, 14, model.main.new_constant(bias_c, "bias_c"))
    remove_dead_code(model)
    original = tflgraph.to_bytes(model)
    assert strip(model)[0]
    assert weight_shapes(model) == [("UNID", (13, 8)), ("FULL", (10, 13))]
    assert_same_outputs(original, model)


def test_dynamic_batch_models_are_stripped():
    model = tflgraph.load(fixture("dead_mlp"))
    for t in model.main.tensors:
        if not t.is_constant:
            t.shape_signature = (-1, *t.shape[1:])
    original = tflgraph.to_bytes(model)
    assert strip(model)[0]
    assert weight_shapes(model) == EXPECTED["dead_mlp"]
    assert_same_outputs(original, model)


def test_dynamic_range_layers_only_lose_zero_channels(monkeypatch):
    """Hybrid FC (int8 weights, float input) quantizes its input with a range over all
    channels: the 8 zero channels go, the 4 unread but non-zero ones must stay."""
    model = tflgraph.load(fixture("dead_mlp"))
    sg = model.main
    for op in sg.ops_of_type("FULLY_CONNECTED"):
        w = op.inputs[1].data.astype(np.float64)
        scale = np.maximum(np.abs(w).max(axis=1), 1e-8) / 127
        q = np.round(w / scale[:, None]).astype(np.int8)
        quant = {
            "scale": scale.astype(np.float32),
            "zero_point": np.zeros(len(scale), np.int64),
            "quantized_dimension": 0,
        }
        sg.set_input(op, 1, sg.new_constant(q, "w_int8", quantization=quant))
    remove_dead_code(model)
    original = tflgraph.to_bytes(model)
    assert_unchecked_round_is_refused(model)  # every layer is hybrid: nothing to evaluate
    trust_construction(monkeypatch)
    assert strip(model)[0]
    assert weight_shapes(model) == [("FULL", (24, 16)), ("FULL", (32, 24)), ("FULL", (10, 32))]
    assert len(sg.ops_of_type("FULLY_CONNECTED")[0].inputs[1].quantization["scale"]) == 24
    assert_same_outputs(original, model, runtime_names=("litert",), exact=True)  # no TFLM kernel
