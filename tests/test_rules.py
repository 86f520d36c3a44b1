"""Rules that commit and check by themselves (tflgraph.rules): a rewrite returns the new tensor
(or {old: new}); the framework checks it on the reference interpreter over every op the
pattern matched, named or not, and replaces the uses; `m.new_op` infers shapes and dtypes."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import assert_same_outputs

import tflgraph
from tflgraph import Any, Const, Op
from tflgraph.ir import Model
from tflgraph.pipeline import PassError
from tflgraph.rules import Match

ONE = Const("one", where=lambda a: bool(np.all(a == 1)))
# z*h + (1-z)*hh, the GRU blend: no name on the inner ops, as a user writes it
BLEND = Op("ADD", Op("MUL", Any("z"), Any("h")), Op("MUL", Op("SUB", ONE, Any("z")), Any("hh")))


def blend_model() -> Model:
    """z, h, hh [2, 4] -> y = z*h + (1-z)*hh."""
    m = Model()
    sg = m.add_subgraph("main")
    z, h, hh = (sg.new_tensor(n, (2, 4)) for n in ("z", "h", "hh"))
    one = sg.new_constant(np.float32(1.0), "one")
    zh, omz, rest, y = (sg.new_tensor(n, (2, 4)) for n in ("zh", "1-z", "(1-z)hh", "y"))
    sg.add_op("MUL", [z, h], [zh], options={})
    sg.add_op("SUB", [one, z], [omz], options={})
    sg.add_op("MUL", [omz, hh], [rest], options={})
    sg.add_op("ADD", [zh, rest], [y], options={})
    sg.inputs, sg.outputs = [z, h, hh], [y]
    return m


def short_blend(m):
    """z*h + (1-z)*hh = hh + z*(h - hh): exact in reals, a rounding apart in floats."""
    d = m.new_op("SUB", [m["h"], m["hh"]])
    return m.new_op("ADD", [m["hh"], m.new_op("MUL", [m["z"], d])])


def wrong_blend(m):
    """hh + z*(h + hh): wrong."""
    d = m.new_op("ADD", [m["h"], m["hh"]])
    return m.new_op("ADD", [m["hh"], m.new_op("MUL", [m["z"], d])])


def rule_pass(pattern, rewrite, prove=True) -> tflgraph.RulePass:
    cls = type("TestRule", (tflgraph.RulePass,), {"rules": [(pattern, rewrite)], "prove": prove})
    p = cls()
    p.explanations = []
    return p


def live_types(m: Model) -> list[str]:
    """Op types in execution order, without the dead ones a declined rewrite leaves."""
    sg = m.main
    live = {id(op) for t in sg.outputs for op in _ancestors(sg, t)}
    return [op.type for op in sg.operators if id(op) in live]


def _ancestors(sg, t):
    op = sg.producer(t)
    if op is None:
        return []
    return [op] + [a for x in op.inputs if x is not None for a in _ancestors(sg, x)]


def test_a_returned_tensor_is_checked_over_unnamed_matched_ops_and_committed():
    """Issue 16 point 1: the inner MULs and the SUB have no name; they must be computed in
    the check, not fed random values (which refused this exact rewrite)."""
    m = blend_model()
    original = tflgraph.to_bytes(m)
    p = rule_pass(BLEND, short_blend)
    assert p.run(m), p.explanations
    assert p.stats == {"matched": 1, "rewritten": 1}
    assert live_types(m) == ["SUB", "MUL", "ADD"]
    assert m.main.outputs[0].name == "y"  # a model output keeps its name
    m.check()
    assert_same_outputs(original, m)  # in LiteRT and TFLM


def test_m_prove_also_computes_unnamed_matched_ops():
    def by_hand(m):
        d = m.new_op("SUB", [m["h"], m["hh"]], like=m.out)
        y = m.new_op("ADD", [m["hh"], m.new_op("MUL", [m["z"], d], like=m.out)], like=m.out)
        if why := m.prove(m.out, y):
            return why
        m.replace(m.out, y)

    m = blend_model()
    p = rule_pass(BLEND, by_hand)
    assert p.run(m), p.explanations


def test_a_wrong_returned_tensor_is_refused_with_the_reason():
    m = blend_model()
    p = rule_pass(BLEND, wrong_blend)
    assert not p.run(m)
    assert p.stats == {"matched": 1, "rewritten": 0}
    (line,) = p.explanations
    assert line.startswith("main: ADD -> 'y': refused: not equal: 'y': max error")
    assert live_types(m) == ["MUL", "SUB", "MUL", "ADD"]


def test_prove_false_commits_unchecked():
    """Without the check, what the rewrite returns is committed (here wrongly, on purpose)."""
    m = blend_model()
    p = rule_pass(BLEND, wrong_blend, prove=False)
    assert p.run(m) and live_types(m) == ["ADD", "MUL", "ADD"]


def int_model():
    """i int32[3] -> y = i + 0."""
    m = Model()
    sg = m.add_subgraph("main")
    i, y = sg.new_tensor("i", (3,), "int32"), sg.new_tensor("y", (3,), "int32")
    sg.add_op("ADD", [i, sg.new_constant(np.zeros(3, np.int32), "zero")], [y], options={})
    sg.inputs, sg.outputs = [i], [y]
    return m


ADD_ZERO = Op("ADD", Any("x"), Const(where=lambda a: not a.any()))


def quantized_model():
    """i int8[3] (scale 0.5) -> y = i + 0: quantized arithmetic the interpreter does not model."""
    m = Model()
    sg = m.add_subgraph("main")
    q = {"scale": np.array([0.5], np.float32), "zero_point": np.zeros(1, np.int64)}
    i = sg.new_tensor("i", (3,), "int8", quantization=q)
    y = sg.new_tensor("y", (3,), "int8", quantization=q)
    zero = sg.new_constant(np.zeros(3, np.int8), "zero", quantization=q)
    sg.add_op("ADD", [i, zero], [y], options={})
    sg.inputs, sg.outputs = [i], [y]
    return m


def test_integer_inputs_are_sampled_with_integers():
    m = int_model()
    assert rule_pass(ADD_ZERO, lambda m: m["x"]).run(m)  # i + 0 -> i, checked on integers
    assert m.main.outputs == m.main.inputs
    wrong = rule_pass(Op("ADD", Any("x"), Const()), lambda m: m["x"])  # drops any constant
    m = int_model()
    m.main.set_input(m.main.operators[0], 1, m.main.new_constant(np.ones(3, np.int32), "one"))
    assert not wrong.run(m)
    assert wrong.explanations == ["main: ADD -> 'y': refused: not equal: 'y': max error 1 > 0"]


def test_what_cannot_be_checked_is_refused_unless_prove_is_false():
    p = rule_pass(ADD_ZERO, lambda m: m["x"])
    assert not p.run(quantized_model())
    (line,) = p.explanations
    assert line.startswith("main: ADD -> 'y': refused: cannot check: ") and "quantized" in line
    m = quantized_model()
    assert rule_pass(ADD_ZERO, lambda m: m["x"], prove=False).run(m)
    assert m.main.outputs == m.main.inputs


def test_a_mapping_replaces_each_old_tensor():
    """{old: new} may name an inner tensor: here (1-z)*hh -> hh - z*hh."""

    def inner(m):
        (rest,) = [op for op in m.matched if op.type == "MUL" and m["hh"] in op.inputs]
        zhh = m.new_op("MUL", [m["z"], m["hh"]])
        return {rest.outputs[0]: m.new_op("SUB", [m["hh"], zhh])}

    m = blend_model()
    p = rule_pass(BLEND, inner)
    assert p.run(m), p.explanations
    assert live_types(m) == ["MUL", "MUL", "SUB", "ADD"]
    wrong = rule_pass(BLEND, lambda m: {m.matched[1].outputs[0]: m["hh"]})
    assert not wrong.run(blend_model()) and "refused: not equal" in wrong.explanations[0]


def test_returning_the_old_tensor_changes_nothing():
    p = rule_pass(BLEND, lambda m: m.out)
    assert not p.run(blend_model()) and p.stats == {"matched": 1, "rewritten": 0}


def test_returning_a_tensor_after_m_replace_is_an_error():
    def both(m):
        y = short_blend(m)
        m.replace(m.out, y)
        return y

    with pytest.raises(PassError, match="both called m.replace and returned"):
        rule_pass(BLEND, both).run(blend_model())


# --------------------------------------------------------------------------- new_op inference


def match_at_root(m: Model) -> Match:
    sg = m.main
    return Match(sg, sg.producer(sg.outputs[0]), {})


def test_new_op_infers_shape_and_dtype():
    m = blend_model()
    match = match_at_root(m)
    z = m.main.inputs[0]
    w = match.constant(np.ones((3, 4), np.float32))
    fc = match.new_op("FULLY_CONNECTED", [z, w, None])
    assert (fc.shape, fc.dtype) == ((2, 3), np.float32)
    less = match.new_op("LESS", [z, match.constant(np.float32(0))])
    assert (less.shape, less.dtype) == ((2, 4), np.bool_)
    cast = match.new_op("CAST", [z], options={"in_data_type": 0, "out_data_type": 2})
    assert (cast.shape, cast.dtype) == ((2, 4), np.int32)
    arg = match.new_op("ARG_MAX", [z, match.constant(np.int32(1))], options={"output_type": 2})
    assert (arg.shape, arg.dtype) == ((2,), np.int32)
    assert len(match.new_ops) == 4


def test_new_op_asks_for_like_when_it_cannot_infer():
    m = blend_model()
    match = match_at_root(m)
    z = m.main.inputs[0]
    z.shape_signature = (-1, 4)
    with pytest.raises(PassError, match=r"dynamic shape\); pass like="):
        match.new_op("NEG", [z])
    h = m.main.inputs[1]
    h.quantization = {"scale": np.float32([0.1]), "zero_point": np.int64([0])}
    with pytest.raises(PassError, match="cannot infer the output .*quantized.*; pass like="):
        match.new_op("NEG", [h])
    with pytest.raises(PassError, match="give options {'out_data_type': ...} or like="):
        match.new_op("CAST", [m.main.inputs[2]])
    assert match.new_ops == []


# --------------------------------------------------------------------------- through the CLI

WRONG_RULE = '''
import tflgraph
from tflgraph.pattern import Any, Const, Op

ONE = Const("one", where=lambda a: bool((a == 1).all()))
BLEND = Op("ADD", Op("MUL", Any("z"), Any("h")), Op("MUL", Op("SUB", ONE, Any("z")), Any("hh")))


@tflgraph.rule("test-wrong-blend", BLEND)
def wrong_blend(m):
    """hh + z*(h + hh): wrong, so the framework's check refuses it."""
    d = m.new_op("ADD", [m["h"], m["hh"]])
    return m.new_op("ADD", [m["hh"], m.new_op("MUL", [m["z"], d])])
'''


def test_a_wrong_rule_is_refused_with_a_reason_in_explain(tmp_path):
    rules, src, out = tmp_path / "wrong.py", tmp_path / "in.tflite", tmp_path / "out.tflite"
    rules.write_text(textwrap.dedent(WRONG_RULE))
    src.write_bytes(tflgraph.to_bytes(blend_model()))
    r = subprocess.run(
        [sys.executable, "-m", "tflgraph", "optimize", src, "-o", out, "--load", rules,
         "--passes", "test-wrong-blend", "--explain"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "main: ADD -> 'y': refused: not equal: 'y': max error" in r.stdout, r.stdout
    assert tflgraph.load(out).op_counts() == tflgraph.load(src).op_counts()


# --------------------------------------------------------------------------- where rewrites break


def relu6_model() -> Model:
    """x [2, 8] -> RELU6(x)."""
    m = Model()
    sg = m.add_subgraph("main")
    x, y = sg.new_tensor("x", (2, 8)), sg.new_tensor("y", (2, 8))
    sg.add_op("RELU6", [x], [y])
    sg.inputs, sg.outputs = [x], [y]
    return m


def test_a_rewrite_wrong_only_past_a_clamp_point_is_refused():
    """RELU6 -> RELU agrees on [-1, 1): the samples reach past 6."""
    p = rule_pass(Op("RELU6", Any("x")), lambda m: m.new_op("RELU", [m["x"]]))
    assert not p.run(relu6_model())
    (line,) = p.explanations
    assert line.startswith("main: RELU6 -> 'y': refused: not equal: 'y': max error")


def test_samples_cover_zero_both_signs_magnitudes_clamp_points_and_observed_ranges():
    from tflgraph.reference.equivalence import CLAMP_POINTS, probe_feed

    m = relu6_model()
    x = m.main.inputs[0]
    rng = np.random.default_rng(0)
    big = np.concatenate([probe_feed(x, rng, 1).ravel() for _ in range(20)])
    assert (big < 0).any() and (big > 0).any() and (big == 0).any()
    assert np.abs(big).max() > 100 and np.abs(big[big != 0]).min() < 1e-2
    assert set(CLAMP_POINTS) <= set(big.tolist())
    observed = {x: (10.0, 20.0)}
    inside = probe_feed(x, rng, 2, observed)
    assert inside.min() >= -1.0 and inside.max() <= 21.0 and (inside > 10).mean() > 0.5
    counter = m.main.new_tensor("t", (), "int32")
    assert probe_feed(counter, rng, 1, {counter: (0.0, 9.0)}).dtype == np.int32


# --------------------------------------------------------------------------- user errors


def run_rule_file(tmp_path, body: str, *extra) -> subprocess.CompletedProcess:
    rules = tmp_path / "my_rules.py"
    rules.write_text(textwrap.dedent(body))
    src = tmp_path / "in.tflite"
    tflgraph.save(blend_model(), src)
    return subprocess.run(
        [sys.executable, "-m", "tflgraph", "optimize", str(src), "-o", str(tmp_path / "o.tflite"),
         "--load", str(rules), "--passes", "mine", "--no-verify", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "body, message",
    [
        (
            """\
            import tflgraph
            from tflgraph import Any, Op

            @tflgraph.rule("mine", Op("ADD", Any("a"), Any("b")))
            def mine(m):
                return 1 / 0
            """,
            "rule 'mine': raised ZeroDivisionError at my_rules.py:6: division by zero",
        ),
        (
            """\
            import tflgraph
            from tflgraph import Any, Op

            @tflgraph.rule("mine", Op("ADD", Any("a"), Any("b")))
            def mine(m):
                return m["wx"]
            """,
            "rule 'mine': at my_rules.py:6: no capture 'wx' in this match (captures: 'a', 'b')",
        ),
        (
            """\
            import tflgraph
            from tflgraph import Any, Op

            def heavy(op):
                return op.outputs[0].shape[5] > 1

            @tflgraph.rule("mine", Op("ADD", Any("a"), Any("b"), where=heavy))
            def mine(m):
                return "never"
            """,
            "rule 'mine': its pattern raised IndexError at my_rules.py:5: tuple index out of range",
        ),
    ],
    ids=["rewrite", "capture", "where"],
)
def test_an_exception_in_a_users_rule_names_the_rule_and_the_line(tmp_path, body, message):
    r = run_rule_file(tmp_path, body)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"tflgraph: error: {message}", r.stderr
    assert "internal error" not in r.stderr and not (tmp_path / "o.tflite").exists()


def test_explain_counts_matches_and_rewrites_and_names_a_root_type_the_model_lacks(tmp_path):
    r = run_rule_file(
        tmp_path,
        """\
        import tflgraph
        from tflgraph import Any, Op

        class Mine(tflgraph.RulePass):
            rules = [
                (Op("ADD", Any("a"), Any("b")), lambda m: m.new_op("ADD", [m["b"], m["a"]])),
                (Op("SOFTMAX", Any("x")), lambda m: "never"),
            ]

        tflgraph.register("mine")(Mine)
        """,
        "--explain",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "[mine] main: ADD -> 'y': rewritten" in lines
    assert "[mine] no SOFTMAX op in the model: the pattern's root never matches" in lines
    # the fixed point runs the pass again: the swapped ADD matches and is rewritten once more
    (counts,) = [x for x in lines if x.startswith("[mine] matched")]
    assert re.fullmatch(r"\[mine\] matched (\d+), rewritten \1", counts), counts
