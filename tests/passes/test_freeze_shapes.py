"""freeze-shapes: batch-None models get static shapes (the stored input shapes, or a batch size)
proven on the reference interpreter; shapes that values decide, loop accumulators and models
the interpreter cannot run stay as they are."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_equal_values,
    assert_gives_tf_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    outputs_in,
    run,
    tflgraph_cli,
)

import tflgraph
from tflgraph.ir import Model
from tflgraph.reference.interpreter import evaluate
from tflgraph.runtime import runtimes

BATCH_NONE = ["k3_lstm_unroll_bnone", "tf_shape_code"]


def dynamic(model: Model) -> list[str]:
    return [t.name for sg in model.reachable_subgraphs() for t in sg.tensors if t.is_dynamic]


def tensor(model: Model, name: str):
    return next(t for t in model.main.tensors if t.name == name)


@pytest.mark.parametrize("name", BATCH_NONE)
def test_batch_none_fixture_gets_static_shapes(name):
    original = tflgraph.load(fixture(name))
    assert dynamic(original)
    model, records = run(name, ["freeze-shapes"])
    assert changed(records, "freeze-shapes")
    assert dynamic(model) == []
    assert model.main.inputs[0].shape == original.main.inputs[0].shape  # the stored shape
    assert_gives_tf_reference(model, name, ("litert",))


def test_int8_model_gets_static_shapes():
    """Full-integer int8: the interpreter runs its quantized ops for their shapes only."""
    model, records = run("k3_lstm_unroll_bnone_int8", ["freeze-shapes"])
    assert records[0].stats["tensors_frozen"] > 100 and dynamic(model) == []
    assert_same_outputs(fixture("k3_lstm_unroll_bnone_int8"), model, ("litert",), exact=True)


def test_placeholder_shapes_become_the_computed_ones():
    """The converter stores [1, 1] for RESHAPE(x, [s[0], n // s[0]]) (really [1, 24]) and []
    with has_rank false for a tensor of unknown rank (really x's [1, 4, 6])."""
    original = tflgraph.load(fixture("tf_shape_code"))
    assert tensor(original, "Reshape").shape == (1, 1)
    assert not tensor(original, "Reshape_1").has_rank
    model, _ = run("tf_shape_code", ["freeze-shapes"])
    assert tensor(model, "Reshape").shape == (1, 24)
    assert tensor(model, "mul").shape == (1, 24)
    reshaped = tensor(model, "Reshape_1")
    assert reshaped.shape == (1, 4, 6) and reshaped.has_rank


@pytest.mark.parametrize("name", BATCH_NONE)
def test_batch_option_freezes_that_batch(name):
    """batch=4: the original's values for a batch of 4 come from the reference interpreter
    (the runtimes run the original at its stored batch of 1)."""
    original = tflgraph.load(fixture(name))
    model = tflgraph.load(fixture(name))
    options = {"freeze-shapes": {"batch": 4}}
    tflgraph.optimize(model, "freeze-shapes,fold-constants", options=options, check_each=True)
    assert model.main.inputs[0].shape[0] == 4 and dynamic(model) == []
    x = np.random.default_rng(0).uniform(-1, 1, model.main.inputs[0].shape).astype(np.float32)
    (want,) = evaluate(original, [x])
    for rt in ("litert", "tflm"):
        runs = runtimes.run_isolated(tflgraph.to_bytes(model), [[x]] * 2, rt, modes=("no-reset",))
        for k, (got,) in enumerate(runs["no-reset"]):
            assert got.shape[0] == 4
            assert_equal_values(want, got, where=f"{rt} invoke {k}")


def value_shaped_model() -> Model:
    """x[-1, 3] -> z = x + x; n (int32 [2], an input) -> y = FILL(n, 1.0): y's shape is n's
    values, which no input shape determines."""
    model = Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (1, 3), shape_signature=(-1, 3))
    n = sg.new_tensor("n", (2,), "int32")
    z = sg.new_tensor("z", (1, 3), shape_signature=(-1, 3))
    y = sg.new_tensor("y", (1, 1), shape_signature=(-1, -1))
    sg.add_op("ADD", [x, x], [z], {})
    sg.add_op("FILL", [n, sg.new_constant(np.float32(1.0), "one")], [y])
    sg.inputs, sg.outputs = [x, n], [z, y]
    return model


def test_shape_decided_by_values_stays_dynamic():
    model, _ = run(value_shaped_model(), ["freeze-shapes"])
    assert dynamic(model) == ["y"]  # the feeds gave it two shapes; x and z are frozen


def test_fixed_batch_loop_accumulators_stay_dynamic():
    """k3_lstm_seq (batch 1): only its loop body has -1s, for an accumulator that grows per
    step; the pass does not even evaluate the model."""
    original = tflgraph.load(fixture("k3_lstm_seq"))
    model, records = run("k3_lstm_seq", ["freeze-shapes"])
    assert not changed(records, "freeze-shapes")
    assert dynamic(model) == dynamic(original) != []
    assert tflgraph.to_bytes(model) == tflgraph.to_bytes(original)


def unrunnable_model() -> Model:
    """x[-1, 4] -> ADD_N(x, x) (the reference interpreter has no ADD_N kernel) -> TANH."""
    model = Model()
    sg = model.add_subgraph("main")
    x, s, y = (sg.new_tensor(n, (1, 4), shape_signature=(-1, 4)) for n in ("x", "s", "y"))
    sg.add_op("ADD_N", [x, x], [s])
    sg.add_op("TANH", [s], [y])
    sg.inputs, sg.outputs = [x], [y]
    return model


def test_model_the_interpreter_cannot_run_gets_static_inputs_only():
    model, records = run(unrunnable_model(), ["freeze-shapes"])
    assert dynamic(model) == ["s", "y"]
    assert any("ADD_N" in e for r in records for e in r.explanations)
    assert_equal_values(
        outputs_in(unrunnable_model(), "litert")[0][0], outputs_in(model, "litert")[0][0]
    )
    model = unrunnable_model()
    options = {"freeze-shapes": {"batch": 2}}
    records = tflgraph.optimize(model, "freeze-shapes", options=options)
    assert not records[0].changed and dynamic(model) == ["x", "s", "y"]


@pytest.mark.parametrize("name", BATCH_NONE)
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, ["freeze-shapes"])


@pytest.mark.parametrize("name", BATCH_NONE)
def test_litert_target_keeps_a_dynamic_batch(name):
    """--target litert: LiteRT resizes a batch-None model's input (here to batch 3) in the
    optimized model as in the original; the outputs are the original's (interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    model, records = run(name, ["freeze-shapes", "fold-constants"], target="litert")
    assert not changed(records, "freeze-shapes") and dynamic(model) != []
    it = Interpreter(model_content=tflgraph.to_bytes(model))
    (detail,) = it.get_input_details()
    shape = (3, *detail["shape"][1:])
    it.resize_tensor_input(detail["index"], shape, strict=True)
    it.allocate_tensors()
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    it.set_tensor(detail["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    assert_equal_values(evaluate(tflgraph.load(fixture(name)), [x])[0], got)


def test_cli_batch_freezes_and_checks_against_the_resized_input(tmp_path):
    """`optimize --batch 3`: the result takes [3, 4, 6] and is checked in LiteRT against the
    input file with its batch-None input resized to 3."""
    out = tmp_path / "b3.tflite"
    args = ("optimize", fixture("tf_shape_code"), "-o", out, "--target", "tflm", "--batch", "3")
    done = tflgraph_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "verified: outputs equal in litert" in done.stdout
    model = tflgraph.load(out)
    assert model.main.inputs[0].shape == (3, 4, 6) and dynamic(model) == []
    done = tflgraph_cli("optimize", fixture("tf_shape_code"), "-o", out, "--passes", "cleanup",
                        "--batch", "3")  # fmt: skip
    assert done.returncode != 0 and "'freeze-shapes', which is not in the pipeline" in done.stderr
