"""The pattern language (tflgraph.pattern) and rule passes (tflgraph.rules) on small IR graphs."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from helpers import registered_rules
from modelbuild import fc_mul_model

import tflgraph
from tflgraph import Any, Const, Op, Rest
from tflgraph.ir import Model, SignatureDef
from tflgraph.pipeline import PassError, run_passes

FC = Op("FULLY_CONNECTED", Any("x"), Const("w"), Const("b"), name="fc", activation="NONE")
FC_MUL = Op("MUL", Op("FULLY_CONNECTED", Any("x"), Const("w"), Const("b"), name="fc",
                      activation="NONE", single_use=True),
            Const("s"), name="mul")  # fmt: skip


def only(sg, op_type):
    (op,) = sg.ops_of_type(op_type)
    return op


def test_nested_match_captures_tensors_and_ops():
    sg = fc_mul_model().main
    mul, fc = only(sg, "MUL"), only(sg, "FULLY_CONNECTED")
    caps = FC_MUL.match(sg, mul)
    assert caps is not None
    assert caps["mul"] is mul and caps["fc"] is fc
    assert caps["x"] is sg.inputs[0] and caps["w"] is fc.inputs[1] and caps["s"] is mul.inputs[1]
    assert FC_MUL.why_not(sg, mul) is None
    assert list(FC_MUL.find(sg)) == [(mul, caps)]


def test_op_type_sets_and_wrong_type_reason():
    sg = fc_mul_model().main
    mul = only(sg, "MUL")
    assert Op(("ADD", "MUL")).match(sg, mul) == {}
    assert Op({"ADD", "SUB"}).match(sg, mul) is None
    assert Op({"ADD", "SUB"}).why_not(sg, mul) == "op is MUL, want ADD|SUB"
    assert Op(("ADD", "MUL")).candidates(sg) == [mul]


def test_activation_predicate_explains_the_failed_constraint():
    sg = fc_mul_model(act=1).main
    why = FC_MUL.why_not(sg, only(sg, "MUL"))
    assert "FULLY_CONNECTED: fused activation is RELU, want NONE" in why
    assert FC_MUL.match(sg, only(sg, "MUL")) is None
    relu_ok = Op("FULLY_CONNECTED", activation={"NONE", "RELU"})
    assert relu_ok.match(sg, only(sg, "FULLY_CONNECTED")) == {}
    with pytest.raises(ValueError, match="unknown activation"):
        Op("ADD", activation="SWISH")


def test_options_values_and_predicates():
    sg = fc_mul_model().main
    fc = only(sg, "FULLY_CONNECTED")
    assert Op("FULLY_CONNECTED", options={"keep_num_dims": False}).match(sg, fc) == {}
    assert Op("FULLY_CONNECTED", options={"keep_num_dims": True}).match(sg, fc) is None

    def asymmetric(v):
        return v is True

    p = Op("FULLY_CONNECTED", options={"asymmetric_quantize_inputs": asymmetric})
    assert p.why_not(sg, fc) == (
        "FULLY_CONNECTED: option asymmetric_quantize_inputs=0, want asymmetric"
    )
    assert Op("FULLY_CONNECTED", where=lambda op: len(op.inputs) == 3).match(sg, fc) == {}
    why = Op("FULLY_CONNECTED", where=lambda op: False).why_not(sg, fc)
    assert why == f"FULLY_CONNECTED: fails the predicate at test_pattern.py:{_line() - 1}"


def test_const_any_and_value_predicates():
    sg = fc_mul_model().main
    mul = only(sg, "MUL")
    positive = Op("MUL", Any(), Const("s", where=lambda a: bool(np.all(a > 0))))
    assert positive.match(sg, mul)["s"] is mul.inputs[1]

    def negative(a):
        return bool(np.all(a < 0))

    assert "fails negative" in Op("MUL", Any(), Const(where=negative)).why_not(sg, mul)
    # the FC output is computed, not constant, in either operand order
    why = Op("MUL", Const(), Const()).why_not(sg, mul)
    assert "is not a constant" in why


def test_single_use_rejects_a_second_reader_or_a_graph_output():
    sg = fc_mul_model(second_use=True).main
    why = FC_MUL.why_not(sg, only(sg, "MUL"))
    assert "want a single use" in why and "subgraph output" in why
    sg = fc_mul_model().main
    fc_out = only(sg, "FULLY_CONNECTED").outputs[0]
    extra = sg.new_tensor("z", fc_out.shape)
    sg.add_op("RELU", [fc_out], [extra])
    sg.outputs.append(extra)
    assert "output has 2 reader(s)" in FC_MUL.why_not(sg, only(sg, "MUL"))


def test_commutative_operands_for_mul_but_not_when_disabled():
    sg = fc_mul_model(scale_first=True).main
    mul = only(sg, "MUL")
    caps = FC_MUL.match(sg, mul)
    assert caps is not None and caps["s"] is mul.inputs[0]
    strict = Op("MUL", Op("FULLY_CONNECTED"), Const(), commutative=False)
    assert strict.match(sg, mul) is None
    assert "tensor 's' is a constant, not produced by FULLY_CONNECTED" in strict.why_not(sg, mul)
    # SUB is not commutative: the same operands in the other order do not match
    assert not Op("SUB", Any(), Const()).commutative


def test_repeated_name_binds_the_same_tensor():
    m = Model()
    sg = m.add_subgraph("main")
    x, y = sg.new_tensor("x", (3,)), sg.new_tensor("y", (3,))
    sq, xy = sg.new_tensor("sq", (3,)), sg.new_tensor("xy", (3,))
    square = sg.add_op("MUL", [x, x], [sq], options={})
    product = sg.add_op("MUL", [x, y], [xy], options={})
    p = Op("MUL", Any("a"), Any("a"))
    assert p.match(sg, square) == {"a": x}
    assert p.match(sg, product) is None
    assert "'a' is already bound to tensor 'x', not tensor 'y'" in p.why_not(sg, product)


def test_variadic_operands_and_absent_optional_operands():
    m = Model()
    sg = m.add_subgraph("main")
    a = sg.new_tensor("a", (2, 3))
    c1 = sg.new_constant(np.ones((2, 3), np.float32), "c1")
    c2 = sg.new_constant(np.zeros((2, 3), np.float32), "c2")
    out = sg.new_tensor("out", (2, 9))
    cat = sg.add_op("CONCATENATION", [a, c1, c2], [out], options={"axis": 1})
    p = Op("CONCATENATION", Any("first"), Rest("rest", each=Const()))
    assert p.match(sg, cat) == {"first": a, "rest": [c1, c2]}
    assert Op("CONCATENATION", Rest("all")).match(sg, cat) == {"all": [a, c1, c2]}
    all_const = Op("CONCATENATION", Rest(each=Const()))
    assert "variadic operand 0 <- tensor 'a' is not a constant" in all_const.why_not(sg, cat)
    assert "want at least 4" in Op("CONCATENATION", Rest(min=4)).why_not(sg, cat)
    assert "has 3 operands, want 2" in Op("CONCATENATION", Any(), Any()).why_not(sg, cat)
    with pytest.raises(ValueError):
        Op("CONCATENATION", Rest(), Any())
    # None matches an absent optional operand (FULLY_CONNECTED without bias)
    w = sg.new_constant(np.ones((4, 3), np.float32), "w")
    y = sg.new_tensor("y", (2, 4))
    fc = sg.add_op("FULLY_CONNECTED", [a, w, None], [y], options={})
    assert Op("FULLY_CONNECTED", Any(), Const(), None).match(sg, fc) == {}
    assert "operand 2 <- operand is absent" in FC.why_not(sg, fc)


def test_output_index_of_multi_output_producers():
    m = Model()
    sg = m.add_subgraph("main")
    axis = sg.new_constant(np.array(1, np.int32), "axis")
    x = sg.new_tensor("x", (2, 4))
    parts = [sg.new_tensor(f"p{i}", (2, 2)) for i in range(2)]
    sg.add_op("SPLIT", [axis, x], parts, options={"num_splits": 2})
    r = sg.new_tensor("r", (2, 2))
    relu = sg.add_op("RELU", [parts[1]], [r])
    assert Op("RELU", Op("SPLIT", out=1)).match(sg, relu) == {}
    assert Op("RELU", Op("SPLIT", out=None)).match(sg, relu) == {}
    assert "is not output 0 of SPLIT" in Op("RELU", Op("SPLIT")).why_not(sg, relu)
    # single_use looks at the output that is read (parts[0] has no reader at all)
    once = Op("RELU", Op("SPLIT", out=None, single_use=True))
    assert once.match(sg, relu) == {}
    sg.add_op("TANH", [parts[1]], [sg.new_tensor("t", (2, 2))])
    assert "SPLIT: output has 2 reader(s)" in once.why_not(sg, relu)


# --------------------------------------------------------------------------- rule passes

SCALE_BY_ONE = Op("MUL", Any("x"), Const("one", where=lambda a: bool(np.all(a == 1))))


def drop_mul_by_one(m):
    """MUL(x, 1) -> x when the MUL does not broadcast."""
    if m["x"].shape != m.out.shape:
        return "the MUL broadcasts x"
    m.replace(m.out, m["x"])


def bad_decline(m):
    """Changes the graph, then declines (a bug the pass must report)."""
    m.replace(m.out, m["x"])
    return "changed my mind"


def wrong_drop_mul(m):
    """MUL(x, s) -> x, proved first (so it declines unless s is one)."""
    if why := m.prove(m.out, m["x"]):
        return why
    m.replace(m.out, m["x"])


RULES = {  # pass name -> (pattern, rewrite); registered by the `rules` fixture
    "test-drop-mul-by-one": (SCALE_BY_ONE, drop_mul_by_one),
    "test-bad-decline": (Op("MUL", Any("x"), Const()), bad_decline),
    "test-wrong-drop-mul": (Op("MUL", Any("x"), Const("s")), wrong_drop_mul),
}


@pytest.fixture
def rules():
    """This module's rules registered as passes for one test, unregistered after it."""
    with registered_rules(RULES):
        yield


def with_output_mul(scale):
    """mlp-like x -> FC -> SOFTMAX -> MUL by `scale`, with a signature naming the outputs."""
    m = fc_mul_model()
    sg = m.main
    fc_y = sg.outputs[0]
    soft = sg.new_tensor("soft", fc_y.shape)
    sg.add_op("SOFTMAX", [fc_y], [soft], options={"beta": 1.0})
    s = sg.new_constant(np.full(fc_y.shape[-1:], scale, np.float32), "scale")
    out = sg.new_tensor("probs", fc_y.shape)
    sg.add_op("MUL", [soft, s], [out], options={})
    sg.outputs = [out]
    m.signature_defs = [SignatureDef("serving_default", sg, [("x", sg.inputs[0])], [("p", out)])]
    return m


def test_rule_replaces_a_graph_output_keeping_its_name_and_signature(rules):
    m = with_output_mul(1.0)
    records = run_passes(m, ["test-drop-mul-by-one"], check_each=True)
    sg = m.main
    assert records[0].changed and records[0].stats == {"matched": 1, "rewritten": 1}
    assert "MUL" in m.op_counts()  # the FC -> MUL by a non-one scale stays
    (out,) = sg.outputs
    assert out.name == "probs" and sg.producer(out).type == "SOFTMAX"
    assert m.signature_defs[0].outputs == [("p", out)]
    again = tflgraph.load(tflgraph.to_bytes(m))
    assert again.signature_defs[0].outputs[0][1].name == "probs"
    assert again.signature_defs[0].outputs[0][1] is again.main.outputs[0]
    assert not run_passes(m, ["test-drop-mul-by-one"])[0].changed


def _line() -> int:
    """The caller's line number."""
    return sys._getframe(1).f_lineno


def test_rule_declines_and_explains(rules):
    m = with_output_mul(1.0)
    records = run_passes(m, ["test-drop-mul-by-one"], explain=True)
    lines = records[0].explanations
    # the predicate is named by where it is written, the value shown briefly
    failed = r"constant 's' = \[4\] float32 \[[-0-9., e]+\] fails the predicate at test_pattern"
    assert any(re.search(rf"no match: MUL operand 1 <- {failed}\.py:\d+", x) for x in lines)
    assert lines[-1] == "main: MUL -> 'probs': rewritten"  # --explain says what changed too
    m2 = fc_mul_model(scale_shape=(1, 1, 4), scale=1.0)
    lines = run_passes(m2, ["test-drop-mul-by-one"], explain=True)[0].explanations
    assert lines == ["main: MUL -> 'y': declined: the MUL broadcasts x"]


def test_declining_after_a_change_is_an_error(rules):
    with pytest.raises(PassError, match="declined after changing the graph"):
        run_passes(fc_mul_model(), ["test-bad-decline"])


def test_rule_pass_with_several_rows_and_fresh_constants():
    calls = []

    def negate_scale(m):
        calls.append(m.op.type)
        new = m.new_op("MUL", [m["x"], m.constant(-m["s"].data, like=m["s"])], like=m.out,
                       options=m.op.options)  # fmt: skip
        m.replace(m.out, new)

    class Negate(tflgraph.RulePass):
        rules = [
            (Op("MUL", Any("x"), Const("s", where=lambda a: bool(np.all(a > 0)))), negate_scale),
            (Op("ADD", Any("x"), Const("s")), negate_scale),
        ]

    m = fc_mul_model()
    old_s = m.main.ops_of_type("MUL")[0].inputs[1]
    before = old_s.data.copy()
    assert Negate().run(m)
    new_mul = [op for op in m.main.ops_of_type("MUL") if m.main.is_used(op.outputs[0])][0]
    assert np.array_equal(new_mul.inputs[1].data, -before)
    assert np.array_equal(old_s.data, before)  # the old buffer was not edited
    assert new_mul.options == m.main.ops_of_type("MUL")[0].options
    assert new_mul.options is not m.main.ops_of_type("MUL")[0].options
    assert calls == ["MUL"]
    m.check()


# --------------------------------------------------------------------------- proofs


def test_prove_accepts_exact_rewrites_and_refutes_wrong_ones(rules):
    lines = run_passes(fc_mul_model(scale=1.0), ["test-wrong-drop-mul"], explain=True)
    assert lines[0].changed and lines[0].stats == {"matched": 1, "rewritten": 1}
    m = fc_mul_model(scale=1.5)
    before = m.op_counts()
    records = run_passes(m, ["test-wrong-drop-mul"], explain=True, check_each=True)
    assert not records[0].changed and m.op_counts() == before
    (line,) = records[0].explanations
    assert re.fullmatch(r"main: MUL -> 'y': declined: not equal: 'y': max error \S+ > \S+", line)


def test_prove_samples_integer_inputs_with_integers(rules):
    m = Model()
    sg = m.add_subgraph("main")
    i = sg.new_tensor("i", (3,), "int32")
    s = sg.new_constant(np.full(3, 2, np.int32), "s")
    y = sg.new_tensor("y", (3,), "int32")
    sg.add_op("MUL", [i, s], [y], options={})
    sg.inputs, sg.outputs = [i], [y]
    lines = run_passes(m, ["test-wrong-drop-mul"], explain=True)[0].explanations
    (line,) = lines  # integers are exact: any difference is too much
    assert re.fullmatch(r"main: MUL -> 'y': declined: not equal: 'y': max error \d+ > 0", line)


def test_a_rewrite_that_edits_the_graph_directly_returns_true():
    def rewire(m):
        m.sg.set_input(m.op, 1, m.constant(np.ones(4, np.float32), like=m["s"]))
        return True

    class Direct(tflgraph.RulePass):
        rules = [(Op("MUL", Op("FULLY_CONNECTED"), Const("s", where=lambda a: a[0] != 1)), rewire)]

    m = fc_mul_model()
    assert Direct().run(m) and not Direct().run(m)


def test_bind_op_lists_the_matched_ops_and_match_keeps_them_private():
    from tflgraph.pattern import MATCHED

    m = fc_mul_model()
    (mul,) = m.main.ops_of_type("MUL")
    (fc,) = m.main.ops_of_type("FULLY_CONNECTED")
    pattern = Op("MUL", Op("FULLY_CONNECTED", Any("x"), Const("w"), Const("b")), Const("s"))
    caps: dict = {}
    assert pattern.bind_op(m.main, mul, caps) is None
    assert caps[MATCHED] == (fc, mul)  # innermost first, the root last, none named
    assert MATCHED not in pattern.match(m.main, mul)
