"""`tflgraph verify` / `tflgraph.verify` and `optimize --verify`, in the real runtimes.

Every model edit goes through the IR and gives a changed tensor a new Buffer (the loaded
buffers are read-only views of the file).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, fixture

import tflgraph
from tflgraph import Buffer
from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import VerifyError, verify

pytestmark = pytest.mark.skipif(
    not (runtimes.available("litert") and runtimes.available("tflm")),
    reason="needs ai-edge-litert and tflite-micro",
)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tflgraph", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tflgraph: error: "), proc.stderr
    return lines[0]


def round_trip(name: str, tmp_path) -> str:
    path = tmp_path / f"{name}.rt.tflite"
    tflgraph.save(tflgraph.load(fixture(name)), path)
    return str(path)


def nudged_weight(name: str = "mlp", delta: float = 1e-2) -> tflgraph.Model:
    """The fixture with one element of the first FULLY_CONNECTED/CONV_2D weight moved by delta."""
    model = tflgraph.load(fixture(name))
    op = model.main.ops_of_type("FULLY_CONNECTED", "CONV_2D")[0]
    weight = op.inputs[1]
    arr = np.array(weight.data)  # a copy: never write into the loaded view
    arr.flat[0] += delta
    weight.buffer = Buffer(arr.tobytes())
    return model


def stateless_lstm() -> tflgraph.Model:
    """tfk_lstm_fused with its state zeroed at the start of every invoke.

    The fixture's UNIDIRECTIONAL_SEQUENCE_LSTM keeps h and c (variable tensors) from one invoke
    to the next; here ZEROS_LIKE writes zeros into both before the LSTM runs, so the copy
    forgets its state (test_stateless_copy_is_really_stateless checks that in both runtimes)."""
    model = tflgraph.load(fixture("tfk_lstm_fused"))
    sg = model.main
    lstm = sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")[0]
    for state in (lstm.inputs[18], lstm.inputs[19]):
        assert state.is_variable
        zeros = sg.new_constant(np.zeros(state.shape, np.float32), "zeros")
        sg.add_op("ZEROS_LIKE", [zeros], [state], options={})
    sg.check()
    return model


def rows(report, runtime=None, mode=None):
    return [
        r
        for r in report.rows
        if (runtime is None or r.runtime == runtime) and (mode is None or r.mode == mode)
    ]


# --------------------------------------------------------------------------- equal


@pytest.mark.parametrize(
    "name",
    ["mlp", "cnn_int8", "k3_seq2seq", "signature_meta", "tfk_lstm_return_state", "k3_lstm"],
)
def test_round_trip_is_equal(name, tmp_path):
    report = verify(fixture(name), round_trip(name, tmp_path))
    assert report.verdict == "equal", report.format()
    assert report.exit_code == 0
    compared = [r.runtime for r in report.runtimes if r.compared]
    assert "litert" in compared
    model = tflgraph.load(fixture(name))
    # every output is compared in both modes of every runtime that ran
    assert len(report.rows) == 2 * len(compared) * len(model.main.outputs)
    assert all(r.max_abs == 0 for r in report.rows)


def test_round_trip_cli_exit_0(tmp_path):
    for name in ("cnn_int8", "signature_meta"):
        proc = cli("verify", fixture(name), round_trip(name, tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert "verdict: equal" in proc.stdout
        assert proc.stdout.count(" equal") >= 4  # litert and tflm, both modes


def test_int8_tolerance_is_one_step_and_inputs_cover_int8_range(tmp_path):
    report = verify(fixture("cnn_int8"), round_trip("cnn_int8", tmp_path), samples=3)
    assert {r.tolerance for r in report.rows} == {1.0}
    details = [runtimes.IODetail("x", (4096,), np.dtype(np.int8), 0.01, -1)]
    x = runtimes.random_inputs(details, np.random.default_rng(0))[0]
    assert x.min() == -128 and x.max() == 127


def test_stateful_lstm_round_trip_is_equal_in_both_modes(tmp_path):
    report = verify(fixture("tfk_lstm_fused"), round_trip("tfk_lstm_fused", tmp_path))
    assert report.verdict == "equal", report.format()
    assert {(r.runtime, r.mode) for r in report.rows} == {
        (rt, mode) for rt in ("litert", "tflm") for mode in ("no-reset", "reset")
    }


def test_inputs_are_matched_by_name_not_position(tmp_path):
    """k3_seq2seq has inputs enc [1,10,8] and dec [1,5,6]; reversing the subgraph's input
    order gives a model that only name matching can compare (position would mismatch shapes)."""
    model = tflgraph.load(fixture("k3_seq2seq"))
    model.main.inputs.reverse()
    report = verify(fixture("k3_seq2seq"), model)
    assert report.verdict == "equal", report.format()
    renamed = tflgraph.load(fixture("k3_seq2seq"))
    renamed.main.inputs.reverse()
    renamed.signature_defs = []
    for i, t in enumerate(renamed.main.inputs):
        t.name = f"in{i}"
    with pytest.raises(VerifyError, match="shape"):
        verify(fixture("k3_seq2seq"), renamed)


def test_inputs_from_npz_by_name_and_position(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (3, 1, 16)).astype(np.float32)
    by_name, by_pos = tmp_path / "name.npz", tmp_path / "pos.npz"
    np.savez(by_name, x=x)
    np.savez(by_pos, x[0])  # arr_0, one sample
    report = verify(fixture("mlp"), nudged_weight(), inputs=by_name)
    assert report.samples == 3 and report.verdict == "different"
    assert verify(fixture("mlp"), round_trip("mlp", tmp_path), inputs=by_pos).samples == 1
    npy = tmp_path / "x.npy"
    np.save(npy, x)
    assert verify(fixture("mlp"), fixture("mlp"), inputs=npy).samples == 3
    proc = cli("verify", fixture("mlp"), fixture("mlp"), "--inputs", by_name, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "equal" and data["samples"] == 3 and data["seed"] is None


# --------------------------------------------------------------------------- different


def test_one_weight_moved_by_1e_2_is_different(tmp_path):
    changed = tmp_path / "changed.tflite"
    tflgraph.save(nudged_weight(), changed)
    report = verify(fixture("mlp"), changed)
    assert report.verdict == "different" and report.exit_code == 1
    assert all(not r.equal and r.max_abs > r.tolerance for r in report.rows), report.format()
    proc = cli("verify", fixture("mlp"), changed)
    assert proc.returncode == 1, proc.stderr
    assert "DIFFERENT" in proc.stdout and "verdict: different" in proc.stdout
    # a loose enough tolerance accepts the same pair
    worst = max(r.max_abs for r in report.rows)
    assert cli("verify", fixture("mlp"), changed, "--atol", worst * 2).returncode == 0
    assert cli("verify", fixture("mlp"), changed, "--atol", worst / 2).returncode == 1


def test_int8_weights_moved_are_different_in_output_steps():
    """The int8 CNN with its first conv's weights moved by 40 steps: different, with the
    errors measured in output quantization steps (integers)."""
    model = tflgraph.load(fixture("cnn_int8"))
    op = model.main.ops_of_type("CONV_2D")[0]
    arr = np.array(op.inputs[1].data)
    arr[...] = np.clip(arr.astype(np.int16) + 40, -127, 127).astype(np.int8)
    op.inputs[1].buffer = Buffer(arr.tobytes())
    report = verify(fixture("cnn_int8"), model)
    assert report.verdict == "different", report.format()
    assert all(float(r.max_abs).is_integer() for r in report.rows)


def test_stateless_copy_is_really_stateless():
    x = [np.full((1, 10, 8), 0.5, np.float32)]
    for rt in ("litert", "tflm"):
        fixed = runtimes.run(tflgraph.to_bytes(stateless_lstm()), [x, x], rt)
        kept = runtimes.run(fixture("tfk_lstm_fused").read_bytes(), [x, x], rt)
        assert np.array_equal(fixed[0][0], fixed[1][0])
        assert not np.array_equal(kept[0][0], kept[1][0])  # the fixture keeps state
        np.testing.assert_array_equal(fixed[0][0], kept[0][0])  # same model otherwise


@pytest.mark.parametrize("stateful_is_reference", [True, False])
def test_keeping_state_across_invokes_is_a_difference(stateful_is_reference):
    a, b = fixture("tfk_lstm_fused"), stateless_lstm()
    if not stateful_is_reference:
        a, b = b, a
    report = verify(a, b)
    assert report.verdict == "different", report.format()
    for rt in ("litert", "tflm"):
        assert not any(r.equal for r in rows(report, rt, "no-reset")), report.format()
        assert all(r.equal for r in rows(report, rt, "reset")), report.format()
    text = report.format()
    assert "differ only when samples follow each other without a reset" in text


def test_reset_mode_alone_accepts_a_model_meant_to_carry_state(tmp_path):
    report = verify(fixture("tfk_lstm_fused"), stateless_lstm(), modes=("reset",))
    assert report.verdict == "equal" and {r.mode for r in report.rows} == {"reset"}
    # fuse-lstm.stateful_streaming (the model keeps the state on purpose) is checked that way
    out = tmp_path / "streaming.tflite"
    streaming = "fuse-lstm.stateful_streaming=true"
    proc = cli("optimize", fixture("k3_lstm"), "-o", out, "--pass-option", streaming)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert "with a reset between samples" in proc.stdout
    assert verify(fixture("k3_lstm"), out).verdict == "different"  # it does carry state


# ------------------------------------------------------------- runtimes that cannot run


def test_runtime_that_cannot_run_is_reported_and_the_other_still_judges(tmp_path):
    # TFLM has no HASHTABLE kernel: LiteRT alone compares (and would catch a difference)
    report = verify(fixture("strings"), round_trip("strings", tmp_path))
    status = {r.runtime: r for r in report.runtimes}
    assert not status["tflm"].compared and status["tflm"].message.startswith("cannot run A")
    assert "HASHTABLE" in status["tflm"].message
    assert status["litert"].compared and report.verdict == "equal"
    assert {r.runtime for r in report.rows} == {"litert"}
    proc = cli("verify", fixture("strings"), fixture("strings"))
    assert proc.returncode == 0 and "tflm: cannot run A:" in proc.stdout


@pytest.mark.parametrize("refused", ["A", "B"])
def test_litert_delegate_that_refuses_a_model_falls_back_to_builtin_kernels(
    refused, monkeypatch, tmp_path
):
    """XNNPACK refuses to prepare some published int8 models that LiteRT's builtin kernels
    run ("failed to create XNNPACK runtime"): both models are then compared on the builtin
    kernels, never one on each (for int8 the two differ by many steps), and the report says
    so. The refusal is simulated: no committed fixture makes XNNPACK fail."""
    a, b = fixture("cnn_int8").read_bytes(), round_trip("cnn_int8", tmp_path)
    b = open(b, "rb").read()
    b = b + b"\0" * 8 if a == b else b  # tell the two apart: the same model, other bytes
    real, calls = runtimes.run_isolated, []

    def run_isolated(data, feeds, rt, timeout=120.0, modes=runtimes.MODES, kernels="default"):
        label = "A" if data == a else "B"
        calls.append((label, kernels))
        if rt == "litert" and kernels == "default" and label == refused:
            raise runtimes.RuntimeUnavailable("litert failed to invoke: failed to create XNNPACK")
        return real(data, feeds, rt, timeout, modes, kernels)

    monkeypatch.setattr(runtimes, "run_isolated", run_isolated)
    report = verify(a, b, runtime="litert")
    (status,) = report.runtimes
    assert report.verdict == "equal" and status.compared
    assert "default delegate failed" in status.message and "builtin kernels" in status.message
    assert (
        calls
        == {
            "A": [("A", "default"), ("A", "builtin"), ("B", "builtin")],
            "B": [("A", "default"), ("B", "default"), ("B", "builtin"), ("A", "builtin")],
        }[refused]
    )


def test_tflm_is_not_trusted_with_dynamic_shape_while(tmp_path):
    """TFLM returns zeros for Keras return_sequences loops: verify skips it, says why, and
    still gives LiteRT's verdict (here on a changed copy: different)."""
    model = tflgraph.load(fixture("k3_lstm_seq"))
    fc = model.subgraphs[2].ops_of_type("FULLY_CONNECTED")[0]
    arr = np.array(fc.inputs[1].data)
    arr.flat[0] += 1e-2
    fc.inputs[1].buffer = Buffer(arr.tobytes())
    report = verify(fixture("k3_lstm_seq"), model)
    status = {r.runtime: r for r in report.runtimes}
    assert "dynamic-shape" in status["tflm"].message and not status["tflm"].compared
    assert report.verdict == "different" and {r.runtime for r in report.rows} == {"litert"}


def test_model_b_that_a_runtime_cannot_run_is_different():
    model = tflgraph.load(fixture("mlp"))
    softmax = model.main.ops_of_type("SOFTMAX")[0]
    softmax.opcode = tflgraph.io.schema.CUSTOM
    softmax.custom_code = "NoSuchOp"
    report = verify(fixture("mlp"), model)
    assert report.verdict == "different"
    assert all(r.different and "cannot run B" in r.message for r in report.runtimes)


def test_no_runtime_can_compare_exits_2():
    proc = cli("verify", fixture("custom_op"), fixture("custom_op"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "no runtime could compare" in line and "litert: cannot run A" in line


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, y=np.zeros((1, 16), np.float32))
    ints = tmp_path / "ints.npz"
    np.savez(ints, x=np.zeros((1, 16), np.int64))
    mlp, cnn = fixture("mlp"), fixture("cnn")
    cases = [
        ((tmp_path / "missing.tflite", mlp), "no such file"),
        ((text, mlp), "not a TFLite model"),
        ((mlp, cnn), "shape"),
        ((mlp, mlp, "--inputs", bad_npz), "no data for input"),
        ((mlp, mlp, "--inputs", text), "cannot read inputs"),
        ((mlp, mlp, "--inputs", ints), "is int64"),
        ((fixture("cnn_int8"), fixture("cnn_int8"), "--inputs", ints), "needs [1, 16, 16, 3]"),
        ((mlp, mlp, "--samples", 0), "samples"),
        ((mlp, mlp, "--atol", -1), "atol"),
        ((mlp, mlp, "--runtime", "cpu"), "invalid choice"),
    ]
    for args, words in cases:
        proc = cli("verify", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert words in one_error_line(proc), (args, proc.stderr)


# --------------------------------------------------------------------------- optimize


PERTURB = '''
import numpy as np
from tflgraph import Buffer, Pass, register


@register("perturb-weight")
class PerturbWeight(Pass):
    """Deliberately wrong: moves one FULLY_CONNECTED weight by 1e-2."""

    def run(self, model):
        op = model.main.ops_of_type("FULLY_CONNECTED")[0]
        arr = np.array(op.inputs[1].data)
        arr.flat[0] += 1e-2
        op.inputs[1].buffer = Buffer(arr.tobytes())
        return False  # report no change, so the fixed-point loop runs it once


@register("break-graph")
class BreakGraph(Pass):
    """Deliberately broken: makes an op read a tensor nobody produces."""

    def run(self, model):
        from tflgraph import Tensor

        op = model.main.ops_of_type("SOFTMAX")[0]
        model.main.set_input(op, 0, Tensor("dangling", 0, (1, 10)))
        return True
'''


@pytest.fixture
def pass_file(tmp_path):
    path = tmp_path / "wrong_passes.py"
    path.write_text(PERTURB)
    return path


def optimize_mlp(out, pass_file, passes: str, *extra) -> subprocess.CompletedProcess:
    return cli(
        "optimize", fixture("mlp"), "-o", out, "--load", pass_file, "--passes", passes, *extra
    )


def test_optimize_verify_refuses_to_write_changed_outputs(tmp_path, pass_file):
    out = tmp_path / "out.tflite"
    proc = optimize_mlp(out, pass_file, "cleanup,perturb-weight")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tflite*"))  # no temporary left behind either
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tflgraph: error: ") and "not written" in last
    assert "pipeline 'cleanup,perturb-weight'" in last and "perturb-weight)" in last
    assert "DIFFERENT" in proc.stderr
    # --no-verify writes the (wrong) model; the default pipeline verifies and writes
    proc = optimize_mlp(out, pass_file, "perturb-weight", "--no-verify")
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert verify(fixture("mlp"), out).verdict == "different"
    good, report = tmp_path / "good.tflite", tmp_path / "report.json"
    proc = cli("optimize", fixture("cnn_int8"), "-o", good, "--report", report)
    assert proc.returncode == 0 and good.exists(), proc.stderr
    assert "verified: outputs equal in litert, tflm" in proc.stdout
    checked = json.loads(report.read_text())["verify"]
    assert checked["verdict"] == "equal" and len(checked["rows"]) == 4


def test_optimize_on_a_model_no_runtime_runs_checks_it_on_the_reference_and_writes(tmp_path):
    """No runtime has the Erfinv kernel: the interpreter compares the values around it."""
    out = tmp_path / "custom.tflite"
    proc = cli("optimize", fixture("custom_op"), "-o", out)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert "verified: outputs equal on the reference interpreter" in proc.stdout
    proc = cli("optimize", fixture("custom_op"), "-o", out, "--verify")
    assert proc.returncode == 2 and "cannot verify" in one_error_line(proc)


def test_check_each_names_the_pass_that_broke_the_graph(tmp_path, pass_file):
    out = tmp_path / "out.tflite"
    proc = optimize_mlp(out, pass_file, "cleanup,break-graph", "--check-each")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "pass 'break-graph' broke the graph" in line and "passes before it: cleanup" in line
    assert not out.exists()


def test_a_reader_of_an_lstm_state_is_compared_on_builtin_kernels():
    """onnx2tf 2.x reshapes the LSTM's final h (a variable tensor) into an output; XNNPACK
    runs that RESHAPE before the LSTM (zeros on the first invoke), LiteRT's builtin kernels
    after it. The split BiLSTM reads h from the output instead: only on the builtin kernels
    is it equal to the original, as it is to onnxruntime."""
    original = tflgraph.load(fixture("onnx_bilstm_onnx2tf2"))
    split = tflgraph.load(fixture("onnx_bilstm_onnx2tf2"))
    tflgraph.optimize(split, ["split-bidirectional-lstm"], target="tflm")
    report = verify(original, split, runtime="litert")
    assert report.verdict == "equal"
    (status,) = report.runtimes
    assert "RESHAPE reads the variable tensor" in status.message
    assert "builtin kernels" in status.message
