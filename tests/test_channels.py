"""Channel dependency analysis (tflgraph/channels/graph.py) on small graphs built through the IR.

Each case states which channels the analysis may remove and which it must keep; the cases that
remove something are also run through the pass and compared on the reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import trust_construction
from modelbuild import SAME, VALID, G

from tflgraph import new_options
from tflgraph.channels.analysis import analyze
from tflgraph.passes.strip_dead_channels import StripDeadChannels
from tflgraph.pipeline import remove_dead_code
from tflgraph.reference.interpreter import evaluate_subgraph

RNG = np.random.default_rng(7)


def weights(o, i):
    return RNG.uniform(-1, 1, (o, i)).astype(np.float32)


def removable(model, t):
    """Channels of tensor `t` the analysis removes (sorted list)."""
    keep = analyze(model).removal().keep.get(t)
    return [] if keep is None else [int(c) for c in np.flatnonzero(~keep)]


def strip_and_compare(model, invokes=3):
    """Run the pass; the interpreter gives the same outputs before and after."""
    sg = model.main
    rng = np.random.default_rng(1)
    feeds = [
        [rng.uniform(-1, 1, t.shape).astype(np.float32) for t in sg.inputs] for _ in range(invokes)
    ]
    want = [evaluate_subgraph(sg, f) for f in feeds]
    assert StripDeadChannels().run(model)
    remove_dead_code(model)
    model.check()
    for f, w in zip(feeds, want):
        for a, b in zip(w, evaluate_subgraph(sg, f)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert not StripDeadChannels().run(model), "a second run changed the model again"


def mlp(w1, b1, w2, act=1):
    g = G((1, w1.shape[1]))
    h = g.fc(g.inputs[0], w1, b1, act)
    return g, h, g.done(g.fc(h, w2, np.zeros(w2.shape[0], np.float32)))


def test_unread_and_zero_channels_are_removed():
    w1, w2 = weights(6, 4), weights(3, 6)
    w1[1] = 0.0
    w2[:, 4] = -0.0  # -0.0 is zero
    b1 = np.full(6, 0.1, np.float32)
    b1[1] = 0.0
    g, h, model = mlp(w1, b1, w2)
    assert removable(model, h) == [1, 4]
    strip_and_compare(model)
    fcs = model.main.ops_of_type("FULLY_CONNECTED")
    assert [op.inputs[1].shape for op in fcs] == [(4, 4), (3, 4)]
    assert h.shape == (1, 4)


def test_live_channels_stay():
    g, h, model = mlp(weights(6, 4), np.zeros(6, np.float32), weights(3, 6))
    assert removable(model, h) == []
    assert not StripDeadChannels().run(model)


def test_constant_channel_is_folded_into_the_next_bias():
    w1, w2 = weights(5, 4), weights(3, 5)
    w1[2] = 0.0
    b1 = np.array([0.1, 0.2, 0.7, -0.3, 0.0], np.float32)  # channel 2 is relu(0.7) = 0.7
    g, h, model = mlp(w1, b1, w2)
    assert removable(model, h) == [2]
    strip_and_compare(model)
    bias = model.main.ops_of_type("FULLY_CONNECTED")[1].inputs[2].data
    np.testing.assert_allclose(bias, w2[:, 2] * 0.7, rtol=1e-6)


def test_constant_negative_through_relu_is_zero():
    w1 = weights(5, 4)
    w1[3] = 0.0
    b1 = np.array([0.1, 0.2, 0.7, -0.3, 0.0], np.float32)
    g, h, model = mlp(w1, b1, weights(3, 5), act=1)
    assert removable(model, h) == [3]


@pytest.mark.parametrize("padding, k, folds", [(SAME, 3, False), (VALID, 3, True), (SAME, 1, True)])
def test_constant_channel_into_conv_only_where_exact(padding, k, folds):
    g = G((1, 6, 6, 2))
    w1 = RNG.uniform(-1, 1, (4, 3, 3, 2)).astype(np.float32)
    w1[1] = 0.0
    h = g.conv(g.inputs[0], w1, np.array([0, 0.5, 0, 0], np.float32), SAME, act=1)
    w2 = RNG.uniform(-1, 1, (3, k, k, 4)).astype(np.float32)
    model = g.done(g.conv(h, w2, np.zeros(3, np.float32), padding))
    assert removable(model, h) == ([1] if folds else [])
    if folds:
        strip_and_compare(model)


def test_zero_channel_through_same_conv_is_removed():
    g = G((1, 6, 6, 2))
    w1 = RNG.uniform(-1, 1, (4, 3, 3, 2)).astype(np.float32)
    w1[1] = 0.0
    h = g.conv(g.inputs[0], w1, np.array([0, -0.5, 0, 0], np.float32), SAME, act=1)
    w2 = RNG.uniform(-1, 1, (3, 3, 3, 4)).astype(np.float32)
    model = g.done(g.conv(h, w2, np.zeros(3, np.float32), SAME))
    assert removable(model, h) == [1]
    strip_and_compare(model)


def flatten_model(zero_positions, via_options=False):
    g = G((1, 4, 4, 2))
    w1 = RNG.uniform(-1, 1, (3, 3, 3, 2)).astype(np.float32)
    h = g.conv(g.inputs[0], w1, np.full(3, 0.1, np.float32), VALID, act=1)  # [1, 2, 2, 3]
    if via_options:  # the target shape only in ReshapeOptions.new_shape
        flat = g.op("RESHAPE", [h], (1, 12), {"new_shape": np.array([-1, 12], np.int32)})
    else:
        flat = g.op("RESHAPE", [h, g.const([1, 12], np.int32)], (1, 12))
    w2 = weights(5, 12)
    w2[:, zero_positions] = 0.0
    return g, h, flat, g.done(g.fc(flat, w2, np.zeros(5, np.float32)))


@pytest.mark.parametrize("via_options", [False, True])
def test_flatten_maps_channel_c_to_positions_c_plus_kC(via_options):
    g, h, flat, model = flatten_model([1, 4, 7, 10], via_options)  # channel 1, all positions
    assert removable(model, h) == [1]
    assert removable(model, flat) == [1, 4, 7, 10]
    strip_and_compare(model)
    reshape = model.main.ops_of_type("RESHAPE")[0]
    if via_options:
        assert list(reshape.options["new_shape"]) == [-1, 8]
    else:
        assert list(reshape.inputs[1].data) == [1, 8]
    assert flat.shape == (1, 8)


def test_flatten_partly_read_channel_stays():
    g, h, flat, model = flatten_model([1, 4, 7])  # position 10 still reads channel 1
    assert removable(model, h) == []


def residual(dead_a, dead_b):
    g = G((1, 4))
    wa, wb = weights(5, 4), weights(5, 4)
    wa[dead_a], wb[dead_b] = 0.0, 0.0
    a = g.fc(g.inputs[0], wa, np.zeros(5, np.float32))
    b = g.fc(g.inputs[0], wb, np.zeros(5, np.float32))
    s = g.op("ADD", [a, b], (1, 5), {"fused_activation_function": 1})
    return g, a, s, g.done(g.fc(s, weights(3, 5), np.zeros(3, np.float32)))


def test_add_couples_its_operands():
    g, a, s, model = residual([2, 4], [2])
    assert removable(model, a) == [2] and removable(model, s) == [2]
    strip_and_compare(model)
    assert [op.inputs[1].shape for op in model.main.ops_of_type("FULLY_CONNECTED")] == [
        (4, 4),
        (4, 4),
        (3, 4),
    ]


def test_add_with_a_per_channel_constant_is_sliced():
    g = G((1, 4))
    w = weights(5, 4)
    w[3] = 0.0
    a = g.fc(g.inputs[0], w, np.zeros(5, np.float32))
    s = g.op(
        "ADD",
        [a, g.const(np.array([0.1, 0.2, 0.3, 0.0, 0.5]))],
        (1, 5),
        {"fused_activation_function": 0},
    )
    model = g.done(g.fc(s, weights(3, 5), np.zeros(3, np.float32)))
    assert removable(model, s) == [3]
    strip_and_compare(model)
    add = model.main.ops_of_type("ADD")[0]
    np.testing.assert_array_equal(add.inputs[1].data, np.float32([0.1, 0.2, 0.3, 0.5]))


def test_concat_maps_channel_ranges():
    g = G((1, 4))
    wa, wb = weights(3, 4), weights(2, 4)
    wa[1], wb[0] = 0.0, 0.0
    a = g.fc(g.inputs[0], wa, np.zeros(3, np.float32))
    b = g.fc(g.inputs[0], wb, np.zeros(2, np.float32))
    c = g.op("CONCATENATION", [a, b], (1, 5), {"axis": -1})
    model = g.done(g.fc(c, weights(3, 5), np.zeros(3, np.float32)))
    assert removable(model, c) == [1, 3]
    strip_and_compare(model)
    assert c.shape == (1, 3)


def test_graph_outputs_and_unknown_ops_block():
    w = weights(5, 4)
    w[0] = 0.0
    g = G((1, 4))
    h = g.fc(g.inputs[0], w, np.zeros(5, np.float32))
    model = g.done(h)  # the dead channel is a graph output: its shape stays
    assert removable(model, h) == []
    g = G((1, 4))
    h = g.fc(g.inputs[0], w, np.zeros(5, np.float32))
    s = g.op("SOFTMAX", [h], (1, 5), {"beta": 1.0})  # mixes channels
    model = g.done(g.fc(s, weights(3, 5), np.zeros(3, np.float32)))
    assert removable(model, h) == []


def test_mean_over_the_channel_axis_blocks():
    g = G((1, 3, 3, 2))
    w1 = RNG.uniform(-1, 1, (4, 1, 1, 2)).astype(np.float32)
    w1[2] = 0.0
    h = g.conv(g.inputs[0], w1, np.zeros(4, np.float32), VALID)
    opts = new_options("ReducerOptions", keep_dims=False)
    over_c = g.op("MEAN", [h, g.const([3], np.int32)], (1, 3, 3), opts)
    model = g.done(
        g.fc(g.op("RESHAPE", [over_c, g.const([1, 9], np.int32)], (1, 9)), weights(2, 9))
    )
    assert removable(model, h) == []


def test_a_tensor_never_loses_every_channel():
    w1 = np.zeros((3, 4), np.float32)
    g, h, model = mlp(w1, np.zeros(3, np.float32), weights(2, 3))
    assert removable(model, h) == [1, 2]
    strip_and_compare(model)


def test_failed_proof_leaves_the_graph_as_it_was(monkeypatch):
    import tflgraph.passes.strip_dead_channels as sdc

    w1, w2 = weights(6, 4), weights(3, 6)
    w1[1] = 0.0
    g, h, model = mlp(w1, np.zeros(6, np.float32), w2)
    before = [(list(op.inputs), [t.shape for t in op.outputs]) for op in model.main.operators]
    monkeypatch.setattr(sdc.RoundCheck, "after", lambda self: "not equal (forced)")
    p = StripDeadChannels()
    p.explanations = []
    assert not p.run(model)
    after = [(list(op.inputs), [t.shape for t in op.outputs]) for op in model.main.operators]
    assert before == after and h.shape == (1, 6) and p.explanations


def random_net(rng):
    """A random CNN: convs (SAME/VALID, 1x1/3x3, relu/relu6/none) with random dead filters,
    constant filters and unread input slices, a residual ADD or a CONCATENATION, a depthwise
    conv, pooling, then MEAN or a flatten into a dense head."""

    def conv(x, cout, k=None, padding=None):
        k = k or int(rng.choice([1, 3]))
        padding = padding if padding is not None else int(rng.choice([SAME, VALID]))
        w = rng.uniform(-1, 1, (cout, k, k, x.shape[-1])).astype(np.float32)
        b = rng.uniform(-0.5, 0.5, cout).astype(np.float32)
        w[rng.random(cout) < 0.3] = 0.0  # dead or constant filters
        b[rng.random(cout) < 0.3] = 0.0
        w[..., rng.random(x.shape[-1]) < 0.2] = -0.0  # unread input channels
        return g.conv(x, w, b, padding, act=int(rng.choice([0, 1, 3])))

    g = G((1, 8, 8, 3))
    h = conv(g.inputs[0], 6, 3, SAME)
    if rng.random() < 0.5:
        h = g.op(
            "ADD",
            [conv(h, 6, padding=SAME), conv(h, 6, padding=SAME)],
            h.shape,
            {"fused_activation_function": 1},
        )
    else:
        a, b = conv(h, 4, padding=SAME), conv(h, 3, padding=SAME)
        h = g.op("CONCATENATION", [a, b], (*h.shape[:3], 7), {"axis": 3})
    c = h.shape[-1]
    w = rng.uniform(-1, 1, (1, 3, 3, c)).astype(np.float32)
    w[..., rng.random(c) < 0.3] = 0.0
    opts = {
        "padding": VALID,
        "stride_w": 1,
        "stride_h": 1,
        "depth_multiplier": 1,
        "fused_activation_function": 1,
    }
    h = g.op("DEPTHWISE_CONV_2D", [h, g.const(w), g.const(np.zeros(c))], (1, 6, 6, c), opts)
    pool = new_options(
        "Pool2DOptions", padding=VALID, stride_w=2, stride_h=2, filter_width=2, filter_height=2
    )
    h = g.op("MAX_POOL_2D", [h], (1, 3, 3, c), pool)
    h = conv(h, 5)
    if rng.random() < 0.5:
        opts = new_options("ReducerOptions", keep_dims=False)
        flat = g.op("MEAN", [h, g.const([1, 2], np.int32)], (1, 5), opts)
    else:
        n = int(np.prod(h.shape))
        flat = g.op("RESHAPE", [h, g.const([1, n], np.int32)], (1, n))
    w = weights(4, flat.shape[-1])
    w[:, rng.random(flat.shape[-1]) < 0.2] = 0.0
    return g.done(g.fc(flat, w, np.zeros(4, np.float32)))


@pytest.mark.parametrize("seed", range(40))
def test_random_networks_are_stripped_exactly_by_construction(seed, monkeypatch):
    """With the interpreter proof switched off, every removal must still be exact."""
    trust_construction(monkeypatch)
    model = random_net(np.random.default_rng(seed))
    sg = model.main
    rng = np.random.default_rng(seed)
    feeds = [rng.uniform(-1, 1, sg.inputs[0].shape).astype(np.float32) for _ in range(2)]
    want = [evaluate_subgraph(sg, [f]) for f in feeds]
    StripDeadChannels().run(model)
    remove_dead_code(model)
    model.check()
    for f, w in zip(feeds, want):
        np.testing.assert_allclose(evaluate_subgraph(sg, [f])[0], w[0], rtol=1e-5, atol=1e-5)


def test_strided_slice_over_whole_channels_gets_its_end_fixed():
    w = weights(5, 4)
    w[1] = 0.0
    g = G((1, 4))
    h = g.fc(g.inputs[0], w, np.zeros(5, np.float32))
    ss = g.op(
        "STRIDED_SLICE",
        [h, g.const([0, 0], np.int32), g.const([1, 5], np.int32), g.const([1, 1], np.int32)],
        (1, 5),
        {},
    )
    model = g.done(g.fc(ss, weights(3, 5), np.zeros(3, np.float32)))
    assert removable(model, ss) == [1]
    strip_and_compare(model)
    (op,) = model.main.ops_of_type("STRIDED_SLICE")
    assert list(op.inputs[2].data) == [1, 4] and ss.shape == (1, 4)


@pytest.mark.parametrize("bias, dead", [(0.0, [1]), (0.4, [])])
def test_pad_keeps_zero_channels_dead_but_not_constant_ones(bias, dead):
    g = G((1, 4, 4, 2))
    w1 = RNG.uniform(-1, 1, (3, 1, 1, 2)).astype(np.float32)
    w1[1] = 0.0
    h = g.conv(g.inputs[0], w1, np.array([0.1, bias, 0.2], np.float32), VALID)
    pads = g.const([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)
    p = g.op("PAD", [h, pads], (1, 6, 6, 3), {})
    w2 = RNG.uniform(-1, 1, (2, 3, 3, 3)).astype(np.float32)
    model = g.done(g.conv(p, w2, np.zeros(2, np.float32), VALID))
    assert removable(model, h) == dead
    if dead:
        strip_and_compare(model)


def test_a_dynamic_batch_axis_is_fine_a_dynamic_channel_axis_is_not():
    w1, w2 = weights(6, 4), weights(3, 6)
    w1[1] = 0.0
    g, h, model = mlp(w1, np.zeros(6, np.float32), w2)
    for t in model.main.tensors:
        if not t.is_constant:
            t.shape_signature = (-1, t.shape[1])
    assert removable(model, h) == [1]
    strip_and_compare(model)
    assert h.shape_signature == (-1, 5)
    g, h, model = mlp(w1, np.zeros(6, np.float32), w2)
    h.shape_signature = (1, -1)
    assert removable(model, h) == []
