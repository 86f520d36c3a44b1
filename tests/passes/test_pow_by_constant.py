"""pow-by-constant: POW by 0, 1, 2, 3, 0.5, -0.5, -1 becomes ops TFLM has, within 2 ulp of
LiteRT's own POW over the whole float range (the same NaNs for negative bases); other
exponents, exponents that differ per element and --target litert keep POW."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    as_bytes,
    assert_gives_tf_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
)
from modelbuild import Const, single_op

from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

PASSES = ["pow-by-constant", "cleanup"]
FLT_MAX = np.finfo(np.float32).max
TINY = np.finfo(np.float32).tiny


def wide_range(n: int = 20000) -> np.ndarray:
    """Floats of both signs from 1e-37 to 1e38 and in [-10, 10], zeros, infinities, NaN."""
    rng = np.random.default_rng(0)
    big = 10.0 ** rng.uniform(-37, 38, n) * rng.choice([-1, 1], n)
    special = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan]
    return np.concatenate([rng.uniform(-10, 10, n), big, special]).astype(np.float32)[None]


def outputs(data: bytes, feeds, runtime: str) -> np.ndarray:
    return runtimes.run_isolated(data, [feeds], runtime, modes=("reset",))["reset"][0][0]


def test_pow_fixture_runs_in_tflm_with_tensorflows_outputs():
    with pytest.raises(runtimes.RuntimeUnavailable, match="POW"):
        runtimes.run_isolated(fixture("tf_pow").read_bytes(), [], "tflm")
    model, records = run("tf_pow", PASSES, target="tflm")
    assert changed(records, "pow-by-constant")
    assert "POW" not in model.op_counts() and unsupported_ops(model, "tflm") == {}
    assert model.op_counts()["MUL"] == 2 and model.op_counts()["DIV"] == 1
    assert_same_outputs(fixture("tf_pow"), model, ("litert",))
    assert_gives_tf_reference(model, "tf_pow")
    assert_second_run_changes_nothing("tf_pow", PASSES, "tflm")


@pytest.mark.parametrize("e", [0.0, 1.0, 2.0, 3.0, 0.5, -0.5, -1.0])
def test_within_one_ulp_of_litert_pow_over_the_float_range(e):
    x = wide_range()
    model, feeds = single_op("POW", [x, Const(np.array(e, np.float32))])
    want = outputs(as_bytes(model), feeds, "litert")
    _, records = run(model, PASSES, target="any")
    assert changed(records, "pow-by-constant") and "POW" not in model.op_counts()
    # LiteRT's XNNPACK ops flush denormals and misbehave near FLT_MAX; POW saturates at
    # FLT_MAX where MUL overflows to inf: compare where x and the result are normal floats
    normal = (np.abs(x) >= TINY) & (np.abs(want) >= TINY) & (np.abs(want) < FLT_MAX / 2)
    normal &= np.abs(x) < 1e37
    for rt in ("litert", "tflm"):
        got = outputs(as_bytes(model), feeds, rt)
        assert np.array_equal(np.isnan(got[normal]), np.isnan(want[normal])), rt
        finite = normal & np.isfinite(want)
        ulps = np.abs(got[finite] - want[finite].astype(np.float64)) / np.spacing(
            np.abs(want[finite])
        )
        assert ulps.max(initial=0) <= 2.0, f"{rt}: {ulps.max()} ulp"
        negative = normal & (x < 0)
        assert np.array_equal(np.isnan(got[negative]), np.isnan(want[negative])), rt


@pytest.mark.parametrize(
    "exponent",
    [np.array(1.5, np.float32), np.array(-2.0, np.float32), np.array([2.0, 3.0], np.float32)],
)
def test_other_exponents_stay(exponent):
    model, _ = single_op("POW", [np.ones((1, 2), np.float32), Const(exponent)])
    _, records = run(model, PASSES, target="tflm")
    assert not changed(records, "pow-by-constant") and model.op_counts() == {"POW": 1}


def test_litert_keeps_pow():
    model, records = run("tf_pow", PASSES, target="litert")
    assert not changed(records, "pow-by-constant") and model.op_counts()["POW"] == 2
