"""strip-dead-channels where a kernel ignores what the schema says: a fused TANH that
CONV_2D/DEPTHWISE_CONV_2D/ADD kernels do not apply (no tanh(bias) fold), and a hybrid
DEPTHWISE_CONV_2D whose input range spans every channel (only exact zeros go).

Each model is built through the IR (the G builder of tests/modelbuild.py) and judged in the
real runtimes against the unstripped model.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same_outputs
from modelbuild import SAME, VALID, G

import tflgraph
from tflgraph.passes.strip_dead_channels import StripDeadChannels
from tflgraph.pipeline import remove_dead_code

RNG = np.random.default_rng(11)
TANH = 4


def w(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def strip(model) -> bytes:
    """The original bytes; the model is stripped in place (and must change)."""
    original = tflgraph.to_bytes(model)
    assert StripDeadChannels().run(model)
    remove_dead_code(model)
    model.check()
    return original


def dw_opts(act=0):
    return {
        "padding": SAME,
        "stride_w": 1,
        "stride_h": 1,
        "depth_multiplier": 1,
        "fused_activation_function": act,
    }


@pytest.mark.parametrize("where", ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD"])
def test_fused_tanh_is_not_applied_by_clamping_kernels(where):
    """LiteRT and TFLM ignore a fused TANH on CONV_2D, DEPTHWISE_CONV_2D and ADD (their
    activation range for it is unbounded): filter 0 outputs 0.8, not tanh(0.8), so folding
    tanh(0.8) into the next bias changed the outputs. An unread channel still goes."""
    g = G((1, 4, 4, 2))
    w1 = w(4, 1, 1, 2)
    w1[0] = 0.0
    b1 = np.array([0.8, 0.1, 0.1, 0.1], np.float32)
    h = g.conv(g.inputs[0], w1, b1, SAME, act=TANH if where == "CONV_2D" else 0)
    if where == "DEPTHWISE_CONV_2D":
        dw = [h, g.const(w(1, 1, 1, 4)), g.const(np.full(4, 0.2))]
        h = g.op("DEPTHWISE_CONV_2D", dw, h.shape, dw_opts(TANH))
    elif where == "ADD":
        ones = g.const(np.array([0.5], np.float32))
        h = g.op("ADD", [h, ones], h.shape, {"fused_activation_function": TANH})
    w2 = w(3, 1, 1, 4)
    w2[..., 2] = 0.0  # channel 2 is unread: it goes; channel 0 (the constant) must stay
    model = g.done(g.conv(h, w2, np.zeros(3, np.float32), VALID))
    original = strip(model)
    assert model.main.ops_of_type("CONV_2D")[-1].inputs[1].shape == (3, 1, 1, 3)
    assert_same_outputs(original, model)


def test_hybrid_depthwise_keeps_the_channels_that_set_its_input_range():
    """A hybrid DEPTHWISE_CONV_2D (int8 filter, float input) quantizes its whole input with
    one range: dropping an unread but non-zero input channel (here the largest one) changed
    the quantization of every other channel. Only exactly-zero channels may go."""
    g = G((1, 5, 5, 3))
    w1 = w(4, 3, 3, 3)
    w1[1] *= 20.0  # channel 1 dominates the input range of the depthwise
    w1[3] = 0.0  # channel 3 is exactly zero: it may still go
    h = g.conv(g.inputs[0], w1, np.zeros(4, np.float32), SAME)
    wd = w(1, 3, 3, 4)
    scale = np.abs(wd).reshape(-1, 4).max(axis=0) / 127
    quant = {
        "scale": scale.astype(np.float32),
        "zero_point": np.zeros(4, np.int64),
        "quantized_dimension": 3,
    }
    qd = g.sg.new_constant(np.round(wd / scale).astype(np.int8), "dw", quantization=quant)
    d = g.op("DEPTHWISE_CONV_2D", [h, qd, g.const(np.zeros(4))], h.shape, dw_opts())
    w2 = w(2, 1, 1, 4)
    w2[..., 1] = 0.0  # nobody reads channel 1 after the depthwise
    model = g.done(g.conv(d, w2, np.zeros(2, np.float32), SAME))
    original = strip(model)
    (dw,) = model.main.ops_of_type("DEPTHWISE_CONV_2D")
    assert dw.inputs[1].shape == (1, 3, 3, 3)  # channel 3 went, channel 1 stayed
    assert_same_outputs(original, model, runtime_names=("litert",))  # TFLM: no hybrid kernel
