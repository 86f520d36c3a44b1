"""fold-constants: batch-None shape code (SHAPE -> STRIDED_SLICE -> PACK -> FILL, RANK,
REDUCE_PROD) becomes constants after freeze-shapes, so models TFLM refused run there with
TensorFlow's outputs; SHAPE of a dynamic tensor, a big FILL the target runs and the variable
tensors of fused ops stay."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_gives_tf_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
    tf_reference,
    tflgraph_cli,
)

import tflgraph
from tflgraph.ir import Model
from tflgraph.rnn.loops import analyze_loop
from tflgraph.rnn.lstm_cell import match_lstm_cell
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import shape_problems, unsupported_ops

WILD = ["freeze-shapes", "fold-constants", "cleanup"]
SHAPE_CODE = {"SHAPE", "RANK", "REDUCE_PROD", "STRIDED_SLICE", "PACK", "FLOOR_DIV", "CAST"}
# fixture -> the ops left after WILD --target tflm
LEFT = {
    "tf_shape_code": {"ADD": 1, "MUL": 1, "RESHAPE": 1},
    "k3_lstm_unroll_bnone": {"ADD": 30, "FULLY_CONNECTED": 19, "LOGISTIC": 30, "MUL": 30,
                             "SPLIT": 10, "TANH": 20, "TRANSPOSE": 1, "UNPACK": 1},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LEFT))
def test_shape_code_folds_and_the_model_runs_in_tflm(name):
    inputs, _ = tf_reference(name)
    with pytest.raises(runtimes.RuntimeUnavailable, match="REDUCE_PROD|Non-constant >dims<"):
        runtimes.run_isolated(fixture(name).read_bytes(), [inputs], "tflm")
    model, records = run(name, WILD, target="tflm")
    assert changed(records, "fold-constants")
    assert model.op_counts() == LEFT[name]  # the zero state's FILL too: 64 bytes
    assert unsupported_ops(model, "tflm") == {} and shape_problems(model)["dynamic"] == []
    assert_gives_tf_reference(model, name)


def test_int8_zero_state_fill_folds_and_runs_in_tflm():
    """The published int8 keyword-spotting form: FILL(PACK(STRIDED_SLICE(SHAPE(x))), int8 0).
    The dims fold, then the FILL (it copies the stored int8 value: the constant keeps the
    output's quantization), so TFLM runs the model. LiteRT gives the original's outputs
    exactly, TFLM within one quantization step of them; both are within 2 steps of Keras'
    float outputs, as the original is in LiteRT (the converter's own quantization error)."""
    name = "k3_lstm_unroll_bnone_int8"
    data = fixture(name).read_bytes()
    x, (keras_y,) = tf_reference(name)
    session = runtimes.Session(data, "litert")
    inp, out = session.inputs[0], session.outputs[0]
    feeds = [[np.clip(np.round(x[0] / inp.scale + inp.zero_point), -128, 127).astype(np.int8)]]
    with pytest.raises(runtimes.RuntimeUnavailable, match="Non-constant >dims<"):
        runtimes.run_isolated(data, feeds, "tflm")
    model, _ = run(name, WILD, target="tflm")
    assert not (SHAPE_CODE | {"FILL"}) & set(model.op_counts())
    assert shape_problems(model)["dynamic"] == []
    (zeros,) = [t for t in model.main.tensors if t.name == "functional_1/lstm_1/zeros"]
    assert zeros.is_constant and zeros.quantization["scale"][0] > 0 and not zeros.data.any()
    want = runtimes.run_isolated(data, feeds * 3, "litert", modes=("no-reset",))["no-reset"]
    keras_q = np.round(keras_y / out.scale + out.zero_point)
    for rt, steps in (("litert", 0), ("tflm", 1)):
        got = runtimes.run_isolated(tflgraph.to_bytes(model), feeds * 3, rt, modes=("no-reset",))
        for (w,), (g,) in zip(want, got["no-reset"]):
            assert np.max(np.abs(g.astype(int) - w.astype(int))) <= steps, rt
            assert np.max(np.abs(g.astype(int) - keras_q)) <= 2, rt


def test_default_pipeline_cli_runs_tf_shape_code_in_tflm(tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture("tf_shape_code"), "-o", out, "--target", "tflm")
    assert done.returncode == 0, done.stderr
    assert not SHAPE_CODE & set(tflgraph.load(out).op_counts())
    assert_gives_tf_reference(out, "tf_shape_code")


def test_shape_of_a_dynamic_tensor_is_not_folded():
    """Without freeze-shapes, x is [-1, 4, 6]: SHAPE(x) and what reads it stay; the constant
    branch (nothing but constants) is not there to fold, so the model is unchanged."""
    original = tflgraph.load(fixture("tf_shape_code"))
    model, records = run("tf_shape_code", ["fold-constants"])
    assert not changed(records, "fold-constants")
    assert model.op_counts() == original.op_counts()


def fill_model(n: int, op: str) -> Model:
    """y = x + FILL([n, n], 0.5) (op 'FILL') or x + TILE(c[1, n], [n, 1]) (op 'TILE')."""
    model = Model()
    sg = model.add_subgraph("main")
    x, big, y = (sg.new_tensor(name, (n, n)) for name in ("x", "big", "y"))
    if op == "FILL":
        dims, half = np.array([n, n], np.int32), np.float32(0.5)
        sg.add_op("FILL", [sg.new_constant(dims, "dims"), sg.new_constant(half, "half")], [big])
    else:
        row = np.linspace(-1, 1, n, dtype=np.float32).reshape(1, n)
        reps = sg.new_constant(np.array([n, 1], np.int32), "reps")
        sg.add_op("TILE", [sg.new_constant(row, "row"), reps], [big])
    sg.add_op("ADD", [x, big], [y], {})
    sg.inputs, sg.outputs = [x], [y]
    return model


@pytest.mark.parametrize("n, target, folded", [
    (64, "tflm", False),  # 16 KB of a FILL that TFLM runs: kept
    (8, "tflm", True),  # 256 bytes: folded
])  # fmt: skip
def test_big_fill_stays(n, target, folded):
    model, records = run(fill_model(n, "FILL"), ["fold-constants"], target=target)
    assert changed(records, "fold-constants") == folded
    assert ("FILL" in model.op_counts()) != folded
    if not folded:
        assert any("max_bytes" in e for r in records for e in r.explanations)
    assert_same_outputs(fill_model(n, "FILL"), model, exact=True)


@pytest.mark.parametrize("target, folded", [("tflm", True), ("litert", False)])
def test_big_constant_folds_where_the_target_lacks_the_op(target, folded):
    """TILE [1, 64] -> [64, 64] (16 KB): TFLM has no TILE, LiteRT has."""
    model, _ = run(fill_model(64, "TILE"), ["fold-constants"], target=target)
    assert ("TILE" in model.op_counts()) != folded
    assert_same_outputs(fill_model(64, "TILE"), model, ("litert",), exact=True)


def test_fused_lstm_state_variables_are_not_folded():
    """After fuse-lstm, the fused op's h and c are variable tensors that a FILL (zeros) or a
    RESHAPE (a non-zero constant initial state) sets at the start of every invoke: both read
    constants only. Folded, LiteRT would compute them once at Prepare and the fused op would
    carry its state into the next invoke."""
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    (loop,) = sg.ops_of_type("WHILE")
    cell = match_lstm_cell(analyze_loop(sg, loop))
    sg.set_input(loop, cell.c.index, sg.new_constant(np.full((1, 16), 0.3, np.float32), "c0"))
    original = tflgraph.to_bytes(model)
    model, records = run(model, ["fuse-lstm", "fold-constants"], target="tflm")
    (fused,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    setters = {model.main.producer(fused.inputs[k]).type for k in (18, 19)}
    assert setters == {"FILL", "RESHAPE"}
    assert all(fused.inputs[k].is_variable for k in (18, 19))
    assert_same_outputs(original, model)


@pytest.mark.parametrize("max_bytes, folded", [(1024, True), (0, False)])
def test_zero_states_built_by_fill_feed_the_fused_lstm(max_bytes, folded):
    """The batch-None form of k3_lstm's zero states: h0, c0 = FILL([1, 16], 0.0). Folded, they
    are zero constants and fuse-lstm re-sets its variable states with a FILL of its own; kept
    (max_bytes=0), fuse-lstm copies the FILL's output (which LiteRT computes once, at Prepare)
    into them with a RESHAPE every invoke. Either way: the loop's outputs, invoke after invoke."""
    model = tflgraph.load(fixture("k3_lstm"))
    sg = model.main
    (loop,) = sg.ops_of_type("WHILE")
    cell = match_lstm_cell(analyze_loop(sg, loop))
    dims, zero = np.array([1, 16], np.int32), np.float32(0)
    for state in (cell.h, cell.c):
        init = sg.new_tensor(f"zeros{state.index}", (1, 16))
        sg.add_op("FILL", [sg.new_constant(dims), sg.new_constant(zero)], [init])
        sg.set_input(loop, state.index, init)
    original = tflgraph.to_bytes(model)
    options = {"fold-constants": {"max_bytes": max_bytes}}
    tflgraph.optimize(model, "default", target="tflm", options=options, check_each=True)
    (fused,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    setters = {model.main.producer(fused.inputs[k]).type for k in (18, 19)}
    assert setters == ({"FILL"} if folded else {"RESHAPE"})
    assert_same_outputs(original, model)


@pytest.mark.parametrize("name", sorted(LEFT))
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, WILD, target="tflm")


def trip_count_passed_in() -> Model:
    """A Keras LSTM loop whose cond compares the counters with a WHILE operand (a constant
    the body hands back unchanged), as older converters pass the trip count they computed
    from the input's shape."""
    from loop_models import keras_lstm_loop

    from tflgraph.rnn.loops import rebuild_while

    model = tflgraph.load(keras_lstm_loop(steps=5, features=3, units=4))
    main, cond = model.main, model.subgraphs[1]
    (loop,) = main.ops_of_type("WHILE")
    limit = main.new_constant(np.array(5, np.int32), "strided_slice_3")
    rebuild_while(main, loop, add=[limit])
    for less in cond.ops_of_type("LESS"):
        cond.set_input(less, 1, cond.inputs[-1])
    model.check()
    return model


def test_a_constant_loop_invariant_reaches_the_cond():
    """The cond reads the passed-in trip count as a constant after fold-constants, and the
    loop is fused for TFLM. (rnn.loops also reads a trip count carried through the loop as
    an operand, TF 2.4's spelling: fold-constants makes it the cond's own constant.)"""
    original = trip_count_passed_in()
    model, records = run(tflgraph.load(tflgraph.to_bytes(original)), WILD, target="tflm")
    assert changed(records, "fold-constants")
    cond = model.subgraphs[1]
    assert all(op.inputs[1].is_constant for op in cond.ops_of_type("LESS"))
    assert analyze_loop(model.main, model.main.ops_of_type("WHILE")[0]).trip_count == 5
    tflgraph.optimize(model, "default", target="tflm", check_each=True)
    assert model.op_counts().get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    assert_same_outputs(original, model, runtime_names=("litert",))
    assert_same_outputs(original, model, runtime_names=("tflm",))


def test_an_operand_the_body_changes_is_not_forwarded():
    """The counter starts at a constant too, but the body steps it: it stays an operand."""
    model, _ = run(trip_count_passed_in(), WILD, target="tflm")
    body = model.subgraphs[2]
    assert all(not op.inputs[0].is_constant for op in body.ops_of_type("ADD")[:2])
