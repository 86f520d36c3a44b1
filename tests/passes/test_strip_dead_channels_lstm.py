"""strip-dead-channels after fuse-lstm on pruned Keras 3 LSTMs (fixtures dead_k3_*, issue 17).

Units 0 and 1 of an LSTM are dead in all four gates. They go where removing them is exact
(the fused op's state tensors shrink together with the ops that write them), and stay where
they are not dead after all (a non-zero initial state) or where a state is a model output.
Judged in LiteRT and TFLM against the converter's file, for every target.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_same_outputs, fixture, outputs_in

import tflgraph
from tflgraph.cli import main
from tflgraph.pipeline import remove_dead_code, run_passes
from tflgraph.reference.equivalence import check_models
from tflgraph.runtime.runtimes import RuntimeUnavailable
from tflgraph.runtime.targets import hybrid_layers

LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
# fixture -> units of each fused LSTM after `optimize` (by layer name: reorder-for-memory may
# run a bidirectional layer's directions in either order)
UNITS = {
    "dead_k3_lstm_hybrid": [6],  # the hybrid Dense reads exact zeros: they go
    "dead_k3_lstm_topk": [6],
    "dead_k3_lstm_flex": [6],
    "dead_k3_lstm_stacked": [6, 8],  # lstm2 reads lstm1's dead units as zeros
    "dead_k3_bilstm": [6, 8],  # backward direction only
    "dead_k3_lstm_state_out": [8],  # the final c is a model output: kept
    "dead_k3_lstm_init_state": [8],  # c0 = Dense(z): the units are live
    "dead_k3_seq2seq": [8],  # the (fused) decoder starts from Dense(encoder state): live
}
# the original's return_sequences loops give wrong values in TFLM (dynamic shapes): there the
# optimized model in TFLM is judged against the original in LiteRT
TFLM_AGAINST_LITERT = {"dead_k3_lstm_stacked", "dead_k3_lstm_topk"}


def optimized(name, target):
    model = tflgraph.load(fixture(name))
    tflgraph.optimize(model, "default", target=target)
    model.check()
    return model


def fixture_model(name):
    return tflgraph.load(fixture(name))


def reference(name, target):
    """What the optimized model must compute: the fixture, with its hybrid layers' weights
    dequantized for --target tflm (dequantize-hybrid: TFLM has no hybrid kernels; TFLM is then
    judged against LiteRT's outputs for it, as the float loops' dynamic shapes mislead TFLM)."""
    model = fixture_model(name)
    if target == "tflm" and hybrid_layers(model):
        run_passes(model, ["dequantize-hybrid"], target="tflm")
    return model


def units(model):
    ops = [op for sg in model.subgraphs for op in sg.ops_of_type(LSTM)]
    return [op.inputs[1].shape[0] for op in sorted(ops, key=lambda op: op.outputs[0].name)]


def runs(model, runtime) -> bool:
    try:
        outputs_in(model, runtime, samples=1)
    except RuntimeUnavailable:
        return False
    return True


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
@pytest.mark.parametrize("name", sorted(UNITS))
def test_pruned_lstm_units_go_where_exact_and_outputs_stay(name, target):
    model = optimized(name, target)
    assert units(model) == UNITS[name]
    original = reference(name, target)
    checked = 0
    for rt in ("litert", "tflm"):
        if not runs(original, "litert") or not runs(model, rt):
            continue
        if rt == "tflm" and (name in TFLM_AGAINST_LITERT or hybrid_layers(fixture_model(name))):
            want = outputs_in(original, "litert")
            got = outputs_in(model, "tflm")
            for w, g in zip(want, got):
                for a, b in zip(w, g):
                    assert a.shape == b.shape and abs(a - b).max() <= 1e-5 * max(1, abs(a).max())
        else:
            assert_same_outputs(original, model, runtime_names=(rt,))
        checked += 1
    if name == "dead_k3_lstm_flex":  # no runtime has the Flex delegate: the interpreter
        assert check_models(tflgraph.load(fixture(name)), model) is None  # judges around it
    else:
        assert checked, "no runtime judged the result"


def test_a_state_that_is_a_model_output_keeps_its_units_and_says_why(tmp_path):
    out = tmp_path / "o.tflite"
    cmd = [sys.executable, "-m", "tflgraph", "optimize", str(fixture("dead_k3_lstm_state_out"))]
    run = subprocess.run([*cmd, "-o", str(out), "--explain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    model = tflgraph.load(out)
    assert units(model) == [8] and (1, 8) in [t.shape for t in model.main.outputs]
    for unit in (0, 1):  # constant 0, but in the c output
        assert f"channel {unit} (constant 0) stays: a model output" in run.stdout


@pytest.mark.parametrize("target", ["any", "tflm", "litert"])
@pytest.mark.parametrize("name", sorted(UNITS))
def test_cli_optimize_exits_0(name, target, tmp_path):
    out = tmp_path / "o.tflite"
    cmd = [sys.executable, "-m", "tflgraph", "optimize", str(fixture(name)), "-o", str(out)]
    run = subprocess.run([*cmd, "--target", target], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert units(tflgraph.load(out)) == UNITS[name]
    if name == "dead_k3_lstm_flex":  # written after a check on the reference interpreter
        assert "verified: outputs equal on the reference interpreter" in run.stdout


def test_a_result_nothing_can_check_is_written_only_when_allowed(tmp_path, monkeypatch, capsys):
    """With no runtime and no reference evaluation able to check the result, optimize
    refuses to write it, unless --allow-unverified, which it says in one line."""
    import tflgraph.cli as cli

    monkeypatch.setattr(cli, "check_models", lambda a, b: "cannot check: (forced)")
    out = tmp_path / "o.tflite"
    argv = ["optimize", str(fixture("dead_k3_lstm_flex")), "-o", str(out)]
    assert main(argv) == 2 and not out.exists()
    assert "--allow-unverified" in capsys.readouterr().err
    assert main([*argv, "--allow-unverified"]) == 0 and out.exists()
    warnings = [x for x in capsys.readouterr().err.splitlines() if "unverified" in x]
    assert warnings == [
        "tflgraph: warning: written unverified (--allow-unverified): cannot check: (forced)"
    ]


def test_the_reference_check_compares_the_values_a_flex_op_reads():
    """check_models cannot run FlexErf: it compares what FlexErf reads, and says so when the
    part from FlexErf on differs between the models."""
    original = tflgraph.load(fixture("dead_k3_lstm_flex"))
    assert check_models(original, tflgraph.load(fixture("dead_k3_lstm_flex"))) is None
    changed = tflgraph.load(fixture("dead_k3_lstm_flex"))
    (flex,) = changed.main.ops_of_type("CUSTOM:FlexErf")
    fc = changed.main.producer(flex.inputs[0])
    bias = fc.inputs[2]
    changed.main.set_input(fc, 2, changed.main.new_constant(bias.data + 0.5, bias.name))
    assert check_models(original, changed).startswith("not equal")
    changed.main.set_input(fc, 2, bias)
    flex.custom_options = None
    assert check_models(original, changed).startswith("cannot check")


def test_a_wrong_round_beside_a_hybrid_head_is_caught_on_its_region(monkeypatch):
    """The interpreter cannot run the hybrid Dense head, but it runs the fused LSTM: a round
    built on a wrong claim (live unit 2 said to be 0) is checked there and undone, where the
    old whole-model check was skipped and the round trusted."""
    from tflgraph.channels.layers import Layer
    from tflgraph.passes.strip_dead_channels import StripDeadChannels

    model = tflgraph.load(fixture("dead_k3_lstm_hybrid"))
    tflgraph.optimize(model, "fuse-lstm")
    truth = Layer.out_value

    def lying(self, *args):
        v = truth(self, *args)
        if self.kind == LSTM:
            v = v.copy()
            v[2] = 0.0
        return v

    monkeypatch.setattr(Layer, "out_value", lying)
    p = StripDeadChannels()
    p.explanations = []
    assert not p.run(model)
    assert units(model) == [8]
    assert any("not equal" in line for line in p.explanations), p.explanations


@pytest.mark.parametrize("name", ["dead_k3_lstm_init_state", "dead_k3_seq2seq"])
def test_units_with_dead_gates_but_a_nonzero_initial_state_stay_and_say_why(name, tmp_path):
    out = tmp_path / "o.tflite"
    cmd = [sys.executable, "-m", "tflgraph", "optimize", str(fixture(name)), "-o", str(out)]
    run = subprocess.run([*cmd, "--explain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for unit in (0, 1):
        assert (
            f"unit {unit} (zero cell-gate weights) stays: its initial cell state is not known "
            "to be zero" in run.stdout
        )


def test_a_state_written_by_layers_that_are_zero_on_the_units_loses_them_with_its_writers():
    """dead_k3_lstm_init_state with the bridge Dense layers' rows for units 0, 1 zeroed: c0
    (a FULLY_CONNECTED output) and h0 (a TANH of one) are provably zero there, so the units
    go from the LSTM, from its states and from the layers that write them."""
    model = tflgraph.load(fixture("dead_k3_lstm_init_state"))
    sg = model.main
    bridges = [op for op in sg.ops_of_type("FULLY_CONNECTED") if op.inputs[1].shape == (8, 4)]
    assert len(bridges) == 2
    for op in bridges:
        for i in (1, 2):
            data = np.array(op.inputs[i].data, copy=True)
            data[:2] = 0.0
            sg.set_input(op, i, sg.new_constant(data, op.inputs[i].name))
    remove_dead_code(model)
    original = tflgraph.to_bytes(model)
    tflgraph.optimize(model, "default")
    model.check()
    assert units(model) == [6]
    assert sorted(op.inputs[1].shape for op in sg.ops_of_type("FULLY_CONNECTED"))[:2] == [
        (6, 4),
        (6, 4),
    ]
    assert_same_outputs(original, model, runtime_names=("litert",))  # TFLM: hybrid head


def test_without_a_runtime_installed_the_reference_interpreter_judges(tmp_path, monkeypatch):
    """The default without ai-edge-litert: compared on the interpreter, not written blind."""
    import tflgraph.cli as cli

    monkeypatch.setattr(cli, "_verification_wanted", lambda args: False)
    out = tmp_path / "o.tflite"
    argv = ["optimize", str(fixture("dead_k3_lstm_flex")), "-o", str(out)]
    assert main(argv) == 0 and units(tflgraph.load(out)) == [6]
    monkeypatch.setattr(cli, "check_models", lambda a, b: "not equal: (forced)")
    out.unlink()
    assert main(argv) == 1 and not out.exists()
