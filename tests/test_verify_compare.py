"""The comparison rules of tflgraph.verify on hand-made arrays (no runtime needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflgraph.runtime.verify import Port, Row, RuntimeStatus, VerifyReport, _compare, match


def port(dtype, scale=0.0, zero_point=0, name="y") -> Port:
    return Port(name, name, (3,), np.dtype(dtype), scale, zero_point)


def compare(a, b, pa, pb=None, atol=None, rtol=None):
    a, b = np.asarray(a, pa.dtype), np.asarray(b, (pb or pa).dtype)
    return _compare([a], [b], pa, pb or pa, atol, rtol)


def test_float_default_is_1e_5_times_max_1_and_max_abs_reference():
    f = port(np.float32)
    assert compare([0.5, 0, 0], [0.5 + 9e-6, 0, 0], f)[3]
    assert not compare([0.5, 0, 0], [0.5 + 2e-5, 0, 0], f)[3]
    # large outputs: the bound scales with max|A|
    assert compare([1000, 0, 0], [1000.005, 0, 0], f)[3]
    abs_err, rel_err, tol, ok, _ = compare([1000, 0, 0], [1000.02, 0, 0], f)
    assert not ok and tol == pytest.approx(1e-2) and abs_err == pytest.approx(0.02, rel=1e-3)
    assert rel_err == pytest.approx(2e-5, rel=1e-3)
    # 0.5% off is a wrong rewrite, not noise
    assert not compare([1.0, 2, 3], [1.0, 2, 3 * 1.005], f)[3]


def test_quantized_integers_allow_one_step_plain_integers_none():
    q = port(np.int8, 0.05, -3)
    assert compare([10, -5, 0], [11, -5, 0], q)[3]
    assert not compare([10, -5, 0], [12, -5, 0], q)[3]
    plain = port(np.int32)
    assert not compare([1, 2, 3], [1, 2, 4], plain)[3]
    assert compare([True, False, True], [True, False, True], port(np.bool_))[3]
    assert not compare([True, False, True], [True, True, True], port(np.bool_))[3]


def test_differently_quantized_outputs_are_compared_as_real_values():
    a, b = port(np.int8, 0.1, 0), port(np.int8, 0.05, 0)
    assert compare([10, 20, -4], [20, 40, -8], a, b)[3]  # same real values
    abs_err, _, _, ok, note = compare([10, 20, -4], [24, 40, -8], a, b)
    assert not ok and abs_err == pytest.approx(0.2) and "real values" in note


def test_nan_inf_and_shapes():
    f = port(np.float32)
    assert compare([np.nan, np.inf, 1], [np.nan, np.inf, 1], f)[3]
    assert not compare([np.nan, 0, 1], [0, 0, 1], f)[3]
    assert compare([np.inf, 0, 1], [-np.inf, 0, 1], f)[0] == np.inf
    out = _compare([np.zeros(3, np.float32)], [np.zeros(4, np.float32)], f, f, None, None)
    assert not out[3] and "shape" in out[4]


def test_user_tolerances_replace_the_defaults():
    f = port(np.float32)
    assert compare([1, 0, 0], [1.01, 0, 0], f, atol=0.02)[3]
    assert not compare([1, 0, 0], [1.01, 0, 0], f, atol=0.005)[3]
    assert compare([100, 0, 0], [101, 0, 0], f, rtol=0.02)[3]
    assert not compare([1, 0, 0], [1 + 1e-6, 0, 0], f, atol=0.0)[3]


def test_matching_prefers_names_then_position():
    a = [port(np.float32, name="x"), port(np.float32, name="z")]
    assert match(a, list(reversed(a)), "inputs") == [1, 0]
    other = [port(np.float32, name="p"), port(np.float32, name="q")]
    assert match(a, other, "inputs") == [0, 1]


def test_json_report_is_strict_json():
    report = VerifyReport("a", "b", 1, 0, [RuntimeStatus("litert", True)])
    report.rows.append(Row("litert", "no-reset", "y", np.inf, np.inf, 1e-5, False, "shape"))
    data = json.loads(report.to_json())
    assert data["rows"][0]["max_abs"] == "inf" and data["verdict"] == "different"
    assert data["exit_code"] == 1
