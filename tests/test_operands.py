"""tflgraph.io.operands: builtin ops with the wrong operand count or mixed dtypes are named."""

from __future__ import annotations

import pytest
from helpers import all_fixtures

import tflgraph
from tflgraph.io.operands import operand_problem
from tflgraph.io.schema import OP_CODES
from tflgraph.ir import GraphError, Model, Operator


def _sg():
    return Model().add_subgraph("main")


def _op(op_type, inputs, outputs, options=None):
    """An Operator as a reader would make it: not checked when it is built."""
    return Operator(OP_CODES[op_type], inputs, outputs, options)


def test_wrong_operand_counts():
    sg = _sg()
    a, b, y = (sg.new_tensor(n, (2,)) for n in "aby")
    add = _op("ADD", [a], [y])
    assert operand_problem(add) == "ADD takes 2 inputs, not 1"
    sg = _sg()
    x, y1, y2 = (sg.new_tensor(n, (2,)) for n in ("x", "y1", "y2"))
    relu = _op("RELU", [x], [y1, y2])
    assert operand_problem(relu) == "RELU takes 1 outputs, not 2"
    sg = _sg()
    xs = [sg.new_tensor(f"x{i}", (2,)) for i in range(3)]
    cat = sg.add_op("CONCATENATION", xs, [sg.new_tensor("y", (6,))], options={"axis": 0})
    assert operand_problem(cat) is None
    fc = _op("FULLY_CONNECTED", [xs[0]], [sg.new_tensor("z", (2,))])
    assert operand_problem(fc) == "FULLY_CONNECTED takes 2 to 3 inputs, not 1"


def test_optional_operands_count_as_present():
    sg = _sg()
    x, w, y = sg.new_tensor("x", (1, 4)), sg.new_tensor("w", (3, 4)), sg.new_tensor("y", (1, 3))
    assert operand_problem(sg.add_op("FULLY_CONNECTED", [x, w, None], [y])) is None


def test_mixed_dtypes():
    sg = _sg()
    a, b = sg.new_tensor("a", (2,), "int32"), sg.new_tensor("b", (2,), "float32")
    add = _op("ADD", [a, b], [sg.new_tensor("y", (2,), "float32")])
    assert operand_problem(add) == "ADD mixes dtypes FLOAT32, INT32"
    less = _op("LESS", [a, b], [sg.new_tensor("c", (2,), "bool")])
    assert operand_problem(less) == "LESS compares INT32 with FLOAT32"
    ok = sg.add_op("LESS", [a, a], [sg.new_tensor("d", (2,), "bool")])
    assert operand_problem(ok) is None  # a comparison's output is bool, not its operands' type


def test_while_needs_one_output_per_input():
    sg = _sg()
    x, y = sg.new_tensor("x", (2,)), sg.new_tensor("y", (2,))
    w = _op("WHILE", [x], [y, sg.new_tensor("z", (2,))])
    assert operand_problem(w) == "WHILE has 1 inputs but 2 outputs (one per loop-carried value)"


@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.stem)
def test_every_op_the_converter_wrote_and_tflgraph_rewrote_is_well_formed(path):
    model = tflgraph.load(path)
    tflgraph.optimize(model, "default")
    for m in (tflgraph.load(path), model):
        problems = [
            (sg.name, operand_problem(op))
            for sg in m.subgraphs
            for op in sg.iter_ops()
            if operand_problem(op)
        ]
        assert not problems


def test_a_pass_cannot_add_a_malformed_op_and_check_finds_one_made_otherwise():
    sg = _sg()
    a, b, y = (sg.new_tensor(n, (2,)) for n in "aby")
    with pytest.raises(GraphError, match="cannot add ADD takes 2 inputs, not 1"):
        sg.add_op("ADD", [a], [y], options={})
    sg.add_op(_op("ADD", [a], [y]))  # a ready Operator (the reader's way) is taken as it is
    sg.inputs, sg.outputs = [a], [y]
    with pytest.raises(GraphError, match="subgraph 'main': ADD takes 2 inputs, not 1"):
        sg.check()


def test_a_rule_that_builds_a_one_operand_add_is_told_so():
    from tflgraph import Any, Op
    from tflgraph.pipeline import PassError, unregister
    from tflgraph.rules import rule

    m = Model()
    sg = m.add_subgraph("main")
    x, y = sg.new_tensor("x", (2,)), sg.new_tensor("y", (2,))
    sg.add_op("RELU", [x], [y])
    sg.inputs, sg.outputs = [x], [y]

    @rule("test-one-operand-add", Op("RELU", Any("x")))
    def one_operand_add(m):
        return m.new_op("ADD", [m["x"]], like=m.out)

    try:
        with pytest.raises(PassError, match=r"at test_operands.py:\d+: cannot add ADD takes 2"):
            tflgraph.optimize(m, ["test-one-operand-add"])
    finally:
        unregister("test-one-operand-add")
