"""The one equivalence checker (tflgraph.reference.equivalence): its bound, and check_equal /
check_values on small IR graphs evaluated by the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from tflgraph.ir import Model
from tflgraph.reference.equivalence import (
    RTOL,
    bound,
    check_equal,
    check_values,
    compare,
    magnitude,
    max_error,
)


def test_the_bound_is_relative_to_max_1_and_the_largest_reference_value():
    assert compare([0.5, 0.0], [0.5 + 0.9 * RTOL, 0.0]) is None
    assert "max error" in compare([0.5, 0.0], [0.5 + 2 * RTOL, 0.0])
    assert compare([1000.0, 0.0], [1000.0, 0.9e3 * RTOL]) is None  # scales with max |a|
    assert compare([1000.0, 0.0], [1000.0, 2e3 * RTOL]) is not None
    assert bound(np.float32([3.0, -4.0])) == pytest.approx(4 * RTOL)
    assert bound(np.float32([0.1]), rtol=1e-3) == pytest.approx(1e-3)
    assert bound(np.float32([0.1]), rtol=1e-3, atol=0.5) == 0.5  # verify's user tolerances


def test_an_infinity_in_the_reference_does_not_widen_the_bound():
    a, b = np.float32([np.inf, 0, 1]), np.float32([np.inf, 0, 5])
    assert magnitude(a) == 1.0 and max_error(a, b) == 4.0
    assert "max error 4" in compare(a, b)
    assert compare(a, a.copy()) is None  # the same infinity is equal
    assert max_error(np.float32([np.inf]), np.float32([-np.inf])) == np.inf


def test_nan_meets_nan_only():
    assert compare(np.float32([np.nan, 1]), np.float32([np.nan, 1])) is None
    assert compare(np.float32([np.nan, 1]), np.float32([0, 1])) is not None
    assert compare(np.float32([0, 1]), np.float32([np.nan, 1])) is not None


def test_integers_and_booleans_are_exact():
    assert compare(np.int32([1, 2, 1000000]), np.int32([1, 2, 1000001]), rtol=1.0) is not None
    assert compare(np.int32([1, 2]), np.int64([1, 2])) is None
    assert compare(np.bool_([True, False]), np.bool_([True, True])) is not None
    # a float result against an integer reference is rounded, not exact
    assert compare(np.int32([1000000]), np.float32([1000001])) is None


def test_a_shape_change_is_a_difference():
    why = compare(np.zeros((2, 3), np.float32), np.zeros((1, 2, 3), np.float32), what="y")
    assert why == "y: shape [2, 3] became [1, 2, 3]"


def tiny_graph():
    """x -> y = x * 2 and three candidates for it: x + x (equal), x * 2.001 (not equal),
    RELU(x) * 2 (equal on x >= 0 only)."""
    m = Model()
    sg = m.add_subgraph("main")
    x = sg.new_tensor("x", (4,))
    two = sg.new_constant(np.float32(2.0), "two")
    outs = {}
    for name, op, inputs in [
        ("y", "MUL", [x, two]),
        ("sum", "ADD", [x, x]),
        ("off", "MUL", [x, sg.new_constant(np.float32(2.001), "c")]),
    ]:
        outs[name] = sg.new_tensor(name, (4,))
        sg.add_op(op, inputs, [outs[name]])
    relu = sg.new_tensor("relu", (4,))
    sg.add_op("RELU", [x], [relu])
    outs["relu2"] = sg.new_tensor("relu2", (4,))
    sg.add_op("MUL", [relu, two], [outs["relu2"]])
    sg.inputs, sg.outputs = [x], list(outs.values())
    return sg, x, outs


def test_check_equal_on_a_tiny_graph_both_ways():
    sg, x, t = tiny_graph()
    assert check_equal(sg, t["y"], t["sum"]) is None
    why = check_equal(sg, t["y"], t["off"])
    assert why.startswith("not equal: 'y': max error")
    assert check_equal(sg, [t["y"], t["y"]], [t["sum"], t["off"]]) is not None
    # random inputs in [-1, 1) hit x < 0 where RELU differs; fed x >= 0 it cannot be told
    assert check_equal(sg, t["y"], t["relu2"]) is not None
    positive = lambda rng: {x: rng.uniform(0, 1, 4).astype(np.float32)}  # noqa: E731
    assert check_equal(sg, t["y"], t["relu2"], feeds=positive) is None


def test_check_equal_says_when_it_cannot_check():
    m = Model()
    sg = m.add_subgraph("main")
    i = sg.new_tensor("i", (3,), "int32")
    y = sg.new_tensor("y", (3,), "int32")
    sg.add_op("ADD", [i, i], [y])
    why = check_equal(sg, y, y)
    assert why == "cannot check: no random values for INT32 tensor 'i'"
    h = sg.new_tensor("h", (3,))  # read but neither fed, produced nor constant
    z = sg.new_tensor("z", (3,))
    sg.add_op("NEG", [h], [z])
    assert check_equal(sg, z, z, feeds=lambda rng: {}).startswith("cannot check:")


def test_check_values_against_reference_arrays():
    sg, x, t = tiny_graph()
    feeds = lambda rng: {x: rng.uniform(-1, 1, 4).astype(np.float32)}  # noqa: E731
    assert check_values(sg, [t["y"]], lambda v: [2.0 * v[x].astype(np.float64)], feeds) is None
    # compared in the reference's shape when the sizes agree
    as_column = lambda v: [2.0 * v[x].reshape(4, 1)]  # noqa: E731
    assert check_values(sg, [t["sum"]], as_column, feeds) is None
    why = check_values(sg, [t["off"]], lambda v: [2.0 * v[x]], feeds, what=["y'"])
    assert why.startswith("y': max error")
    assert check_values(sg, [t["off"]], lambda v: [2.0 * v[x]], feeds, rtol=1e-2) is None
