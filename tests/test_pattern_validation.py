"""Typos in patterns and options tables fail where they are written, with the closest name and
the valid ones, instead of never matching (or, for new_options, failing later in `save`)."""

from __future__ import annotations

import pytest
from helpers import fixture

import tflgraph
from tflgraph import Any, Op
from tflgraph.io.schema import OptionsError, new_options, options_kind
from tflgraph.pattern import PatternError


def conv_and_pool():
    """cnn.tflite's main subgraph, its CONV_2D (padding SAME by default, RELU) and its
    MAX_POOL_2D (padding VALID)."""
    sg = tflgraph.load(fixture("cnn")).main
    return sg, sg.ops_of_type("CONV_2D")[0], sg.ops_of_type("MAX_POOL_2D")[0]


@pytest.mark.parametrize(
    "typo, closest",
    [
        ("FULY_CONNECTED", "FULLY_CONNECTED"),
        ("FULLY_CONECTED", "FULLY_CONNECTED"),
        ("SIGMOID", "LOGISTIC"),
        ("logistic", "LOGISTIC"),
        ("Conv2D", "CONV_2D"),
    ],
)
def test_an_unknown_op_type_raises_with_the_closest_name_and_the_valid_ones(typo, closest):
    with pytest.raises(PatternError, match=f"unknown op type '{typo}'") as e:
        Op("MUL", Op(typo, Any()), Any())  # nested as well as at the root
    assert f"did you mean {closest}?" in str(e.value)
    assert "DEPTHWISE_CONV_2D" in str(e.value) and "'CUSTOM:code'" in str(e.value)
    with pytest.raises(PatternError, match=f"did you mean {closest}"):
        Op(("ADD", typo))


def test_custom_ops_are_named_with_their_code():
    assert Op("CUSTOM:MyOp").types == {"CUSTOM:MyOp"}
    with pytest.raises(PatternError, match="'CUSTOM:<custom_code>'"):
        Op("CUSTOM")


def test_op_types_given_as_separate_arguments_are_refused():
    with pytest.raises(PatternError, match=r"as a tuple: Op\(\('ADD', 'SUB'\)"):
        Op("ADD", "SUB")


def test_an_unknown_option_name_raises_with_the_closest_name_and_the_valid_ones():
    with pytest.raises(PatternError, match="unknown option 'pading'") as e:
        Op("CONV_2D", options={"pading": 0})
    assert "did you mean padding?" in str(e.value)
    assert "stride_w" in str(e.value) and "dilation_h_factor" in str(e.value)
    with pytest.raises(PatternError, match="LOGISTIC has no options"):
        Op("LOGISTIC", options={"fused_activation_function": "NONE"})
    # an option of one of several types is fine; a predicate is kept as it is
    Op(("CONV_2D", "LOGISTIC"), options={"padding": lambda v: True})


def test_enum_options_match_by_name():
    sg, conv, pool = conv_and_pool()
    assert Op("CONV_2D", options={"padding": "SAME"}).match(sg, conv) == {}
    assert Op("MAX_POOL_2D", options={"padding": "VALID"}).match(sg, pool) == {}
    assert Op("CONV_2D", options={"padding": 0}).match(sg, conv) == {}  # codes still work
    valid = Op("CONV_2D", options={"padding": "VALID"})
    assert valid.why_not(sg, conv) == "CONV_2D: option padding=SAME, want VALID"
    relu = Op("CONV_2D", options={"fused_activation_function": "RELU"})
    assert relu.match(sg, conv) == {}
    assert Op("CONV_2D", activation="RELU").match(sg, conv) == {}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"padding": "SMAE"}, "'SMAE' is not a Padding (did you mean SAME?); valid: SAME, VALID"),
        ({"padding": 5}, "5 is not a Padding; valid: SAME, VALID"),
        ({"fused_activation_function": "RELU_6"}, "(did you mean RELU6?)"),
        ({"stride_w": "2"}, "Conv2DOptions.stride_w holds an integer of 32 bits, not '2'"),
    ],
)
def test_a_value_an_option_cannot_hold_raises(options, message):
    with pytest.raises(PatternError) as e:
        Op("CONV_2D", options=options)
    assert message in str(e.value)


def test_an_unknown_activation_raises_with_the_closest_name():
    with pytest.raises(PatternError, match="unknown activation 'RELU_6' .did you mean RELU6") as e:
        Op("ADD", activation={"NONE", "RELU_6"})
    assert "RELU_N1_TO_1" in str(e.value)


def test_new_options_takes_enum_names_and_the_model_saves_identically():
    model = tflgraph.load(fixture("cnn"))
    before = tflgraph.to_bytes(model)
    conv = model.main.ops_of_type("CONV_2D")[0]
    conv.options = new_options(
        "Conv2DOptions", padding="SAME", stride_w=1, stride_h=1, fused_activation_function="RELU"
    )
    assert dict(conv.options) == {"padding": 0, "stride_w": 1, "stride_h": 1,
                            "fused_activation_function": 1}  # fmt: skip
    assert tflgraph.to_bytes(model) == before


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"pading": 0}, "Conv2DOptions has no field 'pading' (did you mean padding?); fields: "),
        ({"padding": "SMAE"}, "Conv2DOptions.padding: 'SMAE' is not a Padding (did you mean"),
        ({"padding": 2}, "Conv2DOptions.padding: 2 is not a Padding; valid: SAME, VALID"),
        ({"stride_w": 1.5}, "Conv2DOptions.stride_w holds an integer of 32 bits, not 1.5"),
        ({"stride_w": 2**40}, "Conv2DOptions.stride_w holds an integer of 32 bits"),
    ],
)
def test_new_options_refuses_what_the_table_cannot_hold(fields, message):
    with pytest.raises(OptionsError) as e:
        new_options("Conv2DOptions", **fields)
    assert message in str(e.value)
    assert isinstance(e.value, tflgraph.TflgraphError)  # the CLI prints it as one line


def test_every_op_in_the_fixtures_has_the_options_table_options_kind_names():
    seen = {}
    for name in ("cnn", "k3_lstm", "k3_gru", "dead_concat", "strings", "mlp"):
        for sg in tflgraph.load(fixture(name)).subgraphs:
            for op in sg.operators:
                if op.options is not None and hasattr(op.options, "kind"):
                    seen[op.type] = op.options.kind
    assert {"MAX_POOL_2D", "CONV_2D", "WHILE", "FULLY_CONNECTED"} <= set(seen)
    assert {t: options_kind(t) for t in seen} == seen
    assert options_kind("MEAN") == "ReducerOptions" and options_kind("LOGISTIC") is None
