"""cleanup: y = REVERSE_V2(REVERSE_V2(x, a), a) reads x (bit for bit, in LiteRT and TFLM);
other axes, a reader of the inner reversal and a model output that would become the model input
stay as they are."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same_outputs, changed, run

import tflgraph
from tflgraph.pipeline import run_passes

PASSES = ["cleanup"]


def reversed_twice(axes=(1, -2), inner_read=False, last="TANH") -> tflgraph.Model:
    """x [2, 5, 3] -> REVERSE_V2(axes[0]) -> REVERSE_V2(axes[1]) -> `last` (None: the second
    reversal is the model output); inner_read: the first reversal is a model output too."""
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (2, 5, 3), "float32")
    sg.inputs = [x]
    t = x
    for k, a in enumerate(axes):
        out = sg.new_tensor(f"r{k}", x.shape, "float32")
        sg.add_op("REVERSE_V2", [t, sg.new_constant(np.array([a], np.int32), f"axis{k}")], [out])
        t = out
    outputs = [t]
    if last is not None:
        y = sg.new_tensor("y", x.shape, "float32")
        sg.add_op(last, [t], [y])
        outputs = [y]
    if inner_read:
        outputs.append(sg.producer(t).inputs[0])
    sg.outputs = outputs
    return model


def reverses(model) -> int:
    return model.op_counts().get("REVERSE_V2", 0)


def test_a_pair_over_the_same_axes_goes():
    model, records = run(reversed_twice(), PASSES)
    assert changed(records, "cleanup") and reverses(model) == 0
    assert model.op_counts() == {"TANH": 1}
    model.check()
    assert_same_outputs(reversed_twice(), model, ("litert", "tflm"), exact=True)
    assert not any(r.changed for r in run_passes(model, PASSES))


def test_a_pair_whose_inner_reversal_is_read_elsewhere_keeps_it():
    model, _ = run(reversed_twice(inner_read=True), PASSES)
    assert reverses(model) == 1 and next(model.main.iter_ops()).type == "REVERSE_V2"
    assert model.main.producer(model.main.outputs[0]).inputs[0] is model.main.inputs[0]
    assert_same_outputs(reversed_twice(inner_read=True), model, ("litert", "tflm"), exact=True)


@pytest.mark.parametrize(
    "axes, last",
    [((1, 2), "TANH"), ((1, 0), "TANH"), ((1, 1), None)],
    ids=["other-axis", "batch-axis", "model-output-would-be-the-input"],
)
def test_near_misses_stay(axes, last):
    model, records = run(reversed_twice(axes, last=last), PASSES)
    assert reverses(model) == 2
    assert all(r.stats["reverse_pairs_removed"] == 0 for r in records)


def reshaped_twice(inner="RESHAPE", inner_read=False, quantized=False) -> tflgraph.Model:
    """x [2, 6] -> `inner` ([3, 4], or [1, 2, 6] for EXPAND_DIMS) -> RESHAPE [4, 3] -> TANH;
    inner_read: the inner result is a model output too; quantized: int8 tensors."""
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    dtype, q = (
        ("int8", {"scale": np.array([0.05], np.float32), "zero_point": np.array([3])})
        if (quantized)
        else ("float32", None)
    )
    x = sg.new_tensor("x", (2, 6), dtype, quantization=q)
    sg.inputs = [x]
    if inner == "EXPAND_DIMS":
        z = sg.new_tensor("z", (1, 2, 6), dtype, quantization=q)
        sg.add_op(inner, [x, sg.new_constant(np.array(0, np.int32), "axis")], [z])
    else:
        z = sg.new_tensor("z", (3, 4), dtype, quantization=q)
        sg.add_op(inner, [x, sg.new_constant(np.array([3, 4], np.int32), "s1")], [z])
    y = sg.new_tensor("y", (4, 3), dtype, quantization=q)
    sg.add_op("RESHAPE", [z, sg.new_constant(np.array([4, 3], np.int32), "s2")], [y])
    sg.outputs = [y] + ([z] if inner_read else [])
    if not quantized:
        out = sg.new_tensor("out", (4, 3), "float32")
        sg.add_op("TANH", [y], [out])
        sg.outputs[0] = out
    return model


@pytest.mark.parametrize("inner", ["RESHAPE", "EXPAND_DIMS"])
@pytest.mark.parametrize("quantized", [False, True])
def test_a_reshape_of_a_reshape_reads_the_first_input(inner, quantized):
    model, records = run(reshaped_twice(inner, quantized=quantized), PASSES)
    assert changed(records, "cleanup") and model.op_counts()["RESHAPE"] == 1
    assert inner == "RESHAPE" or "EXPAND_DIMS" not in model.op_counts()
    assert model.main.producer(model.main.outputs[0]) is not None
    model.check()
    original = reshaped_twice(inner, quantized=quantized)
    assert_same_outputs(original, model, ("litert", "tflm"), exact=True)
    assert not any(r.changed for r in run_passes(model, PASSES))


def test_a_reshape_chain_whose_middle_is_read_keeps_it():
    model, _ = run(reshaped_twice(inner_read=True), PASSES)
    assert model.op_counts()["RESHAPE"] == 2  # z stays a model output
    outer = next(op for op in model.main.iter_ops() if op.outputs[0].name == "y")
    assert outer.inputs[0] is model.main.inputs[0]  # but y reads x
    assert_same_outputs(reshaped_twice(inner_read=True), model, ("litert", "tflm"), exact=True)
