"""The comparison rules of tflgraph.verify, on outputs that are chosen arrays: each model's
output is GATHER(constant, [0, 1, 2]), an exact copy in LiteRT, so verify's report judges the
arrays themselves."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from tflgraph import Model
from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import (
    Port,
    Row,
    RuntimeStatus,
    VerifyError,
    VerifyReport,
    _check_pairs,
    match,
    verify,
)

needs_litert = pytest.mark.skipif(not runtimes.available("litert"), reason="needs ai-edge-litert")


@dataclass
class Kind:
    """An output's dtype and quantization (scale 0: not quantized)."""

    dtype: type
    scale: float = 0.0
    zero_point: int = 0


def copying_model(values, kind: Kind, shape=(3,)) -> Model:
    """x (int32 indices [0, 1, 2]) -> GATHER(values, x) -> y, declared of `shape`."""
    q = None
    if kind.scale:
        q = {"scale": np.array([kind.scale], np.float32)}
        q["zero_point"] = np.array([kind.zero_point], np.int64)
    model = Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (3,), "int32")
    y = sg.new_tensor("y", shape, np.dtype(kind.dtype), quantization=q)
    c = sg.new_constant(np.asarray(values, kind.dtype), "values", q)
    sg.add_op("GATHER", [c, x], [y], {"axis": 0, "batch_dims": 0})
    sg.inputs, sg.outputs = [x], [y]
    return model


def compare(a, b, ka: Kind, kb: Kind | None = None, atol=None, rtol=None) -> Row:
    """verify's row for an output that is `a` in model A and `b` in model B (LiteRT)."""
    feed = [np.arange(3, dtype=np.int32)]
    model_a, model_b = copying_model(a, ka), copying_model(b, kb or ka)
    report = verify(model_a, model_b, "litert", inputs=feed, atol=atol, rtol=rtol, modes=("reset",))
    (row,) = report.rows
    return row


@needs_litert
def test_float_default_is_1e_5_times_max_1_and_max_abs_reference():
    f = Kind(np.float32)
    assert compare([0.5, 0, 0], [0.5 + 9e-6, 0, 0], f).equal
    assert not compare([0.5, 0, 0], [0.5 + 2e-5, 0, 0], f).equal
    # large outputs: the bound scales with max|A|
    assert compare([1000, 0, 0], [1000.005, 0, 0], f).equal
    row = compare([1000, 0, 0], [1000.02, 0, 0], f)
    assert not row.equal and row.tolerance == pytest.approx(1e-2)
    assert row.max_abs == pytest.approx(0.02, rel=1e-3)
    assert row.max_rel == pytest.approx(2e-5, rel=1e-3)
    # 0.5% off is a wrong rewrite, not noise
    assert not compare([1.0, 2, 3], [1.0, 2, 3 * 1.005], f).equal


@needs_litert
def test_quantized_integers_allow_one_step_plain_integers_none():
    q = Kind(np.int8, 0.05, -3)
    assert compare([10, -5, 0], [11, -5, 0], q).equal
    assert not compare([10, -5, 0], [12, -5, 0], q).equal
    plain = Kind(np.int32)
    assert not compare([1, 2, 3], [1, 2, 4], plain).equal
    assert compare([True, False, True], [True, False, True], Kind(np.bool_)).equal
    assert not compare([True, False, True], [True, True, True], Kind(np.bool_)).equal


@needs_litert
def test_differently_quantized_outputs_are_compared_as_real_values():
    a, b = Kind(np.int8, 0.1, 0), Kind(np.int8, 0.05, 0)
    assert compare([10, 20, -4], [20, 40, -8], a, b).equal  # same real values
    row = compare([10, 20, -4], [24, 40, -8], a, b)
    assert not row.equal and row.max_abs == pytest.approx(0.2) and "real values" in row.note


@needs_litert
def test_nan_inf_and_shapes():
    f = Kind(np.float32)
    assert compare([np.nan, np.inf, 1], [np.nan, np.inf, 1], f).equal
    assert not compare([np.nan, 0, 1], [0, 0, 1], f).equal
    assert compare([np.inf, 0, 1], [-np.inf, 0, 1], f).max_abs == np.inf
    a = copying_model(np.zeros(3), f)
    b = copying_model(np.zeros((3, 2)), f, shape=(3,))  # declared as A's, computed [3, 2]
    report = verify(a, b, "litert", inputs=[np.arange(3, dtype=np.int32)], modes=("reset",))
    assert not report.rows[0].equal and "shape" in report.rows[0].note


@needs_litert
def test_user_tolerances_replace_the_defaults():
    f = Kind(np.float32)
    assert compare([1, 0, 0], [1.01, 0, 0], f, atol=0.02).equal
    assert not compare([1, 0, 0], [1.01, 0, 0], f, atol=0.005).equal
    assert compare([100, 0, 0], [101, 0, 0], f, rtol=0.02).equal
    assert not compare([1, 0, 0], [1 + 1e-6, 0, 0], f, atol=0.0).equal


def test_matching_prefers_names_then_position():
    def port(name):
        return Port(name, name, (3,), np.dtype(np.float32), 0.0, 0)

    a = [port("x"), port("z")]
    assert match(a, list(reversed(a)), "inputs") == [1, 0]
    other = [port("p"), port("q")]
    assert match(a, other, "inputs") == [0, 1]


def test_json_report_is_strict_json():
    report = VerifyReport("a", "b", 1, 0, [RuntimeStatus("litert", True)])
    report.rows.append(Row("litert", "no-reset", "y", np.inf, np.inf, 1e-5, False, "shape"))
    data = json.loads(report.to_json())
    assert data["rows"][0]["max_abs"] == "inf" and data["verdict"] == "different"
    assert data["exit_code"] == 1


def test_output_sizes_left_open_by_the_signature_may_differ():
    """TF 2.15 stores [1, 1, 16] for a sequence output of signature [-1, -1, 16] that is
    [1, 10, 16] when run: the stored sizes of open dimensions are placeholders."""

    def port(shape, signature=None):
        return Port("y", "y", shape, np.dtype(np.float32), 0.0, 0, signature)

    a = [port((1, 1, 16), (-1, -1, 16))]
    _check_pairs(a, [port((1, 10, 16))], [0], "outputs")
    with pytest.raises(VerifyError, match="shape"):
        _check_pairs(a, [port((1, 10, 15))], [0], "outputs")
    with pytest.raises(VerifyError, match="shape"):  # inputs: A is fed its stored shape
        _check_pairs(a, [port((1, 10, 16))], [0], "inputs")
    with pytest.raises(VerifyError, match="shape"):  # no signature: the stored shape holds
        _check_pairs([port((1, 1, 16))], [port((1, 10, 16))], [0], "outputs")
