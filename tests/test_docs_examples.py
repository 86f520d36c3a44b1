"""The rules in docs/examples/ do what their docstrings say: the GRU blend rewrites a Keras 3
GRU's loop body, the batch-norm fold makes one CONV_2D, the SiLU approximation is refused by
the check; outputs equal in LiteRT and TFLM where a rule applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, assert_same_outputs, fixture, tflgraph_cli

import tflgraph
from tflgraph.ir import Model
from tflgraph.pipeline import load_pass_file, run_passes, unregister

EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture
def example():
    """Load docs/examples/NAME.py; the passes it registered are forgotten afterwards."""
    loaded: list[str] = []

    def load(name: str) -> list[str]:
        names = load_pass_file(str(EXAMPLES / f"{name}.py"))
        loaded.extend(names)
        return names

    yield load
    for name in loaded:
        unregister(name)


def body_types(model: Model) -> list[str]:
    return [op.type for op in model.subgraphs[2].operators]


def test_gru_blend_rewrites_the_keras_gru_loop_body(example):
    assert example("gru_blend") == ["gru-blend"]
    original = tflgraph.load(fixture("k3_gru"))
    model = tflgraph.load(fixture("k3_gru"))
    records = run_passes(model, ["gru-blend", "cleanup"], explain=True, fixed_point=False)
    assert records[0].stats == {"matched": 1, "rewritten": 1}
    before, after = body_types(original), body_types(model)
    assert len(after) == len(before) - 1
    assert after.count("MUL") == before.count("MUL") - 1
    model.check()
    assert_same_outputs(tflgraph.to_bytes(original), tflgraph.to_bytes(model))


def conv_bn_model() -> Model:
    """x [1, 6, 6, 3] -> CONV_2D(4 filters 3x3, SAME) -> MUL(scale[4]) -> ADD(shift[4])."""
    rng = np.random.default_rng(3)
    m = Model()
    sg = m.add_subgraph("main")
    x = sg.new_tensor("x", (1, 6, 6, 3))
    w = sg.new_constant(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w")
    b = sg.new_constant(rng.normal(0, 0.5, 4).astype(np.float32), "b")
    scale = sg.new_constant(rng.uniform(0.5, 2, 4).astype(np.float32), "scale")
    shift = sg.new_constant(rng.normal(0, 1, 4).astype(np.float32), "shift")
    conv, mul, y = (sg.new_tensor(n, (1, 6, 6, 4)) for n in ("conv", "mul", "y"))
    sg.add_op("CONV_2D", [x, w, b], [conv], {"padding": "SAME", "stride_w": 1, "stride_h": 1})
    sg.add_op("MUL", [conv, scale], [mul], {})
    sg.add_op("ADD", [mul, shift], [y], {})
    sg.inputs, sg.outputs = [x], [y]
    return m


def test_fold_batchnorm_makes_one_conv(example):
    example("fold_batchnorm")
    original = conv_bn_model()
    model = conv_bn_model()
    records = run_passes(model, ["fold-batchnorm", "cleanup"], fixed_point=False)
    assert records[0].stats == {"matched": 1, "rewritten": 1}
    assert model.op_counts() == {"CONV_2D": 1}
    assert_same_outputs(tflgraph.to_bytes(original), tflgraph.to_bytes(model))


def test_fold_batchnorm_leaves_a_conv_with_an_activation_alone(example):
    example("fold_batchnorm")
    model = conv_bn_model()
    model.main.operators[0].options["fused_activation_function"] = 1  # RELU before the MUL
    records = run_passes(model, ["fold-batchnorm"], explain=True, fixed_point=False)
    assert records[0].stats == {"matched": 0, "rewritten": 0}
    assert any("fused activation is RELU, want NONE" in x for x in records[0].explanations)


def silu_model() -> Model:
    m = Model()
    sg = m.add_subgraph("main")
    x, s, y = (sg.new_tensor(n, (2, 16)) for n in ("x", "s", "y"))
    sg.add_op("LOGISTIC", [x], [s])
    sg.add_op("MUL", [x, s], [y], {})
    sg.inputs, sg.outputs = [x], [y]
    return m


def test_silu_as_hard_swish_is_refused_with_the_reason(example, tmp_path):
    example("silu")
    model = silu_model()
    records = run_passes(model, ["silu-as-hard-swish"], explain=True, fixed_point=False)
    assert not records[0].changed and model.op_counts() == {"LOGISTIC": 1, "MUL": 1}
    (line,) = [x for x in records[0].explanations if "refused" in x]
    assert line.startswith("main: MUL -> 'y': refused: not equal: 'y': max error")
    src = tmp_path / "silu.tflite"
    tflgraph.save(silu_model(), src)
    out, rules = tmp_path / "o.tflite", EXAMPLES / "silu.py"
    r = tflgraph_cli("optimize", src, "-o", out, "--load", rules, "--passes",
                     "silu-as-hard-swish", "--explain")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "[silu-as-hard-swish] main: MUL -> 'y': refused: not equal" in r.stdout


def test_the_examples_name_no_op_they_do_not_need():
    for path in Path(EXAMPLES).glob("*.py"):
        assert "name=" not in path.read_text(), f"{path.name} names an op (none needs a name)"
