"""dequantize-hybrid (default pipeline, --target tflm only): hybrid layers (int8 weights, float
activations), which TFLM cannot run, get float32 weights; TFLM then runs them with LiteRT's
outputs for the same float model, which `optimize` checks at 1e-5 against the original with
its hybrid layers' dequantized weights. LiteRT's hybrid kernels differ from that by their
activation quantization, within 2e-2 of max|y| (measured and printed); a whole-model int8
model, a float model and --target any/litert stay."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import (
    assert_equal_values,
    assert_gives_litert_reference,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    outputs_in,
    run,
)

import tflgraph
from tflgraph.pipeline import resolve, run_passes
from tflgraph.reference import kernels
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

PASSES = ["dequantize-hybrid", "cleanup"]
HYBRID = ["k3_lstm_dynrange", "tfk_lstm_fused_dynrange", "dead_k3_lstm_hybrid"]


def int8_weights_of_float_layers(model) -> int:
    return sum(
        1
        for sg in model.subgraphs
        for op in sg.iter_ops()
        if op.inputs and op.inputs[0] is not None and op.inputs[0].type_name == "FLOAT32"
        for t in op.inputs[1:]
        if t is not None and t.type_name == "INT8"
    )


def reference_and_optimized(name):
    """(the float reference: dequantize-hybrid alone, the default pipeline's result for
    --target tflm, the reference's records)."""
    reference, records = run(name, PASSES, target="tflm")
    model = tflgraph.load(fixture(name))
    run_passes(model, resolve("default"), check_each=True, target="tflm")
    return reference, model, records


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_layers_get_float_weights_and_run_in_tflm(name):
    assert int8_weights_of_float_layers(tflgraph.load(fixture(name))) > 0
    reference, model, records = reference_and_optimized(name)
    assert changed(records, "dequantize-hybrid") and int8_weights_of_float_layers(reference) == 0
    stats = next(r.stats for r in records if r.name == "dequantize-hybrid")
    assert stats["bytes_after"] == 4 * stats["bytes_before"]
    assert unsupported_ops(model, "tflm") == {}
    # the float model runs in TFLM with LiteRT's outputs of the float reference
    assert_gives_litert_reference(reference, model)
    # against the hybrid original: the activation quantization error, no more
    hybrid, floats = outputs_in(fixture(name), "litert"), outputs_in(reference, "litert")
    errors = [
        np.abs(a - b).max() / max(1.0, np.abs(a).max())
        for w, g in zip(hybrid, floats)
        for a, b in zip(w, g)
    ]
    assert 1e-5 < max(errors) < 2e-2
    assert_second_run_changes_nothing(name, PASSES, "tflm")


def test_weights_are_the_reference_dequantize_per_channel():
    original = tflgraph.load(fixture("k3_lstm_dynrange"))
    model, _ = run("k3_lstm_dynrange", PASSES, target="tflm")
    for sg_old, sg_new in zip(original.subgraphs, model.subgraphs):
        fcs = zip(sg_old.ops_of_type("FULLY_CONNECTED"), sg_new.ops_of_type("FULLY_CONNECTED"))
        for old, new in fcs:
            w = old.inputs[1]
            assert w.quantization["scale"].size > 1  # per output channel
            deq = SimpleNamespace(inputs=[w])  # the DEQUANTIZE kernel reads its operand's scales
            np.testing.assert_array_equal(new.inputs[1].data, kernels.dequantize(deq, w.data))


def test_the_float_loop_fuses_after_dequantizing():
    _, model, _ = reference_and_optimized("k3_lstm_dynrange")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in model.op_counts()


@pytest.mark.parametrize("target", ["any", "litert"])
def test_other_targets_keep_hybrid_layers(target):
    model, records = run("k3_lstm_dynrange", PASSES, target=target)
    assert not changed(records, "dequantize-hybrid") and int8_weights_of_float_layers(model)


@pytest.mark.parametrize("name", ["cnn_int8", "mlp"])
def test_int8_and_float_models_stay(name):
    _, records = run(name, PASSES, target="tflm")
    assert not changed(records, "dequantize-hybrid")


def test_tflm_cannot_run_the_hybrid_original():
    with pytest.raises(runtimes.RuntimeUnavailable, match="INT8|allocate"):
        outputs_in(fixture("k3_lstm_dynrange"), "tflm")


def test_optimize_for_tflm_dequantizes_checks_and_prints_the_cost(tmp_path, capsys):
    """`optimize --target tflm` alone: float weights, the LSTM loop fused, checked in LiteRT and
    TFLM against the original with dequantized weights, the hybrid kernels' own difference
    and the size cost printed; TFLM runs the output."""
    from tflgraph import cli

    out, name = tmp_path / "out.tflite", str(fixture("k3_lstm_dynrange"))
    assert cli.main(["optimize", name, "-o", str(out), "--target", "tflm"]) == 0
    said = capsys.readouterr().out
    assert "verified: outputs equal in litert, tflm" in said
    figure = said.split("LiteRT's hybrid kernels differ from those by ")[1].split("%")[0]
    assert 1e-3 < float(figure) < 2.0  # percent of max|y|: the activation quantization
    assert "8,192 -> 32,768 bytes (+24,576)" in said and "--quantize data.npz" in said
    assert "hybrid layer(s) (int8 weights, float activations) TFLM cannot run" not in said
    model = tflgraph.load(out)
    assert int8_weights_of_float_layers(model) == 0 and not unsupported_ops(model, "tflm")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in model.op_counts()
    assert outputs_in(out, "tflm")  # TFLM allocates and runs it


def test_other_targets_point_to_the_tflm_route(tmp_path, capsys):
    from tflgraph import cli

    out, name = tmp_path / "out.tflite", str(fixture("k3_lstm_dynrange"))
    assert cli.main(["optimize", name, "-o", str(out)]) == 0  # --target any keeps them
    note = capsys.readouterr().out
    advice = "2 hybrid layer(s) (int8 weights, float activations) TFLM cannot run: "
    assert f"{advice}`tflgraph optimize --target tflm` gives them" in note
    assert int8_weights_of_float_layers(tflgraph.load(out))
    assert cli.main(["inspect", name, "--target", "tflm"]) == 0  # inspect: the same advice
    assert f"it has {advice}" in capsys.readouterr().out


def test_a_tflm_allocated_hybrid_lstm_is_still_dequantized(tmp_path, capsys):
    """TFLM allocates the converter's fused hybrid LSTM but computes junk with it: the input
    counts as not running, so the larger float file is kept (not the objective's fallback)."""
    from tflgraph import cli

    out, name = tmp_path / "out.tflite", str(fixture("tfk_lstm_fused_dynrange"))
    with pytest.raises(AssertionError):  # TFLM's outputs for the hybrid original are wrong
        assert_gives_litert_reference(tflgraph.load(name), tflgraph.load(name))
    assert cli.main(["optimize", name, "-o", str(out), "--target", "tflm"]) == 0
    said = capsys.readouterr().out
    assert "TFLM has no hybrid kernels" in said and "not kept" not in said
    assert int8_weights_of_float_layers(tflgraph.load(out)) == 0
    assert_gives_litert_reference(tflgraph.load(out), tflgraph.load(out))


def test_verify_hybrid_as_float(tmp_path, capsys):
    """`verify` compares with the hybrid kernels by default (different), and with the float
    layers they stand for under --hybrid-as-float (equal in both runtimes)."""
    from tflgraph import cli

    out, name = tmp_path / "out.tflite", str(fixture("k3_lstm_dynrange"))
    assert cli.main(["optimize", name, "-o", str(out), "--target", "tflm", "-q"]) == 0
    assert cli.main(["verify", name, str(out), "--runtime", "litert"]) == 1
    assert "--hybrid-as-float compares B with them" in capsys.readouterr().out
    assert cli.main(["verify", name, str(out), "--hybrid-as-float"]) == 0
    said = capsys.readouterr().out
    assert "verdict: equal" in said and "(hybrid layers with dequantized weights)" in said


def test_a_weight_shared_by_unrolled_steps_becomes_one_float_constant():
    """Unrolled RNNs (published: 122 hybrid layers reading 6 weights) share one int8 weight
    among their steps: it gets one float constant, and the size cost counts it once."""
    rng = np.random.default_rng(0)
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    w = sg.new_constant(rng.integers(-127, 128, (4, 4)).astype(np.int8), "w", {"scale": [0.02]})
    x = sg.new_tensor("x", (1, 4))
    sg.inputs = [x]
    for step in range(3):  # h = FC(h, w), three steps
        h = sg.new_tensor(f"h{step}", (1, 4))
        sg.add_op("FULLY_CONNECTED", [x, w, None], [h], {})
        x = h
    sg.outputs = [x]
    original = tflgraph.load(tflgraph.to_bytes(model))
    model, records = run(model, PASSES, target="tflm")
    stats = next(r.stats for r in records if r.name == "dequantize-hybrid")
    assert stats == {"layers": 3, "bytes_before": 16, "bytes_after": 64}
    assert len({id(op.inputs[1]) for op in model.main.operators}) == 1
    feed = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
    (want,) = evaluate_tensors(
        original.main, {original.main.inputs[0]: feed}, original.main.outputs, hybrid_as_float=True
    )
    (got,) = runtimes.run_isolated(tflgraph.to_bytes(model), [[feed]], "tflm", modes=("reset",))[
        "reset"
    ]
    assert_equal_values(want, got[0])


def test_why_hybrid_loops_stay_loops_for_litert():
    """LiteRT's hybrid UNIDIRECTIONAL_SEQUENCE_LSTM reads one scale per weight tensor: given the
    converter's per-channel int8 weights it is far off (it uses the first scale), and with the
    weights requantized per tensor it differs from the hybrid loop by the requantization. So
    fuse-lstm leaves hybrid loops for LiteRT and says why (for TFLM they fuse in float)."""
    original = tflgraph.load(fixture("k3_lstm_dynrange"))
    fcs = [op for sg in original.subgraphs for op in sg.ops_of_type("FULLY_CONNECTED")]
    fused = tflgraph.load(fixture("k3_lstm_dynrange"))
    run_passes(fused, resolve("default"), target="tflm")
    lstm = next(iter(fused.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")))
    units = lstm.inputs[1].shape[0]
    blocks = {}  # fused weight operand -> (int8 rows, their scales), found by value
    for k in range(1, 9):
        for fc in fcs:
            w = fc.inputs[1]
            scales = w.quantization["scale"].astype(np.float32)
            for g in range(4):
                rows = slice(g * units, (g + 1) * units)
                if np.array_equal(w.data[rows] * scales[rows, None], lstm.inputs[k].data):
                    blocks[k] = (w.data[rows], scales[rows])
    assert sorted(blocks) == list(range(1, 9))
    errors = {}
    for per_tensor in (False, True):
        model = tflgraph.load(tflgraph.to_bytes(fused))
        op = next(iter(model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")))
        for k, (rows, scales) in blocks.items():
            if per_tensor:
                scale = scales.max()
                rows = np.clip(np.round(rows * scales[:, None] / scale), -127, 127)
                rows, scales = rows.astype(np.int8), np.array([scale], np.float32)
            q = {"scale": scales, "zero_point": np.zeros(scales.size, np.int64)}
            model.main.set_input(op, k, model.main.new_constant(rows, f"w{k}", quantization=q))
        op.options["asymmetric_quantize_inputs"] = True  # as the loop's FULLY_CONNECTED ops
        want, got = outputs_in(original, "litert"), outputs_in(model, "litert")
        errors[per_tensor] = max(
            np.abs(a - b).max() / max(1.0, np.abs(a).max())
            for w, g in zip(want, got)
            for a, b in zip(w, g)
        )
    assert errors[False] > 0.1  # per channel: the kernel reads the first scale only
    assert 1e-5 < errors[True] < 1e-2  # per tensor: the requantization's error
    _, records = run("k3_lstm_dynrange", ["fuse-lstm"], target="litert")
    said = [x for r in records for x in r.explanations]
    assert any("hybrid UNIDIRECTIONAL_SEQUENCE_LSTM reads one per tensor" in x for x in said)
