"""Review findings on the RNN loop passes, each checked in the real runtimes."""

from __future__ import annotations

import numpy as np
from helpers import fixture, outputs_in

import tflgraph
from tflgraph.loops import rebuild_while


def seq2seq_with_a_dead_encoder_state() -> bytes:
    """k3_seq2seq whose encoder loop also carries s' = s + 1 (never read after the loop).

    The third state stops fuse-lstm on the encoder in the first round of the default
    pipeline, while the decoder (h0, c0 = the encoder loop's results) is fused, its states
    becoming those WHILE results. drop-dead-loop-values then rebuilds the encoder WHILE and
    fuse-lstm fuses it in the next round: both steps must keep the decoder's states variable
    tensors (LiteRT refused to load the result: 'output_state != nullptr')."""
    model = tflgraph.load(fixture("k3_seq2seq"))
    sg = model.main
    encoder = sg.ops_of_type("WHILE")[0]
    init = sg.new_constant(np.zeros((1, 4), np.float32), "extra_init")
    new, (arg,) = rebuild_while(sg, encoder, add=[init])
    body = new.options["body_subgraph_index"]
    step = body.new_tensor("extra_next", (1, 4))
    one = body.new_constant(np.ones((1, 4), np.float32), "one")
    body.add_op("ADD", [arg, one], [step], {"fused_activation_function": 0})
    body.outputs[-1] = step
    model.check()
    return model.to_bytes()


def test_decoder_fused_before_its_encoder_keeps_variable_states():
    original = seq2seq_with_a_dead_encoder_state()
    model = tflgraph.load(original)
    tflgraph.optimize(model, "default", check_each=True)
    assert "WHILE" not in model.op_counts()
    sg = model.main
    for op in sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        assert op.inputs[18].is_variable and op.inputs[19].is_variable
    # the original's TFLM outputs are wrong (dynamic-shape decoder accumulator): LiteRT judges
    want = outputs_in(original, "litert")
    for rt in ("litert", "tflm"):
        got = outputs_in(model.to_bytes(), rt)
        for w, g in zip(want, got):
            for a, b in zip(w, g):
                assert a.shape == b.shape
                err = float(np.max(np.abs(a - b)))
                assert err <= 1e-5 * max(1.0, float(np.max(np.abs(a)))), (rt, err)
