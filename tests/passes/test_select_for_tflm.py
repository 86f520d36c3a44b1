"""select-for-tflm: SELECT, which TFLM lacks, becomes SELECT_V2 (float32) or integer
arithmetic (int32, which TFLM's SELECT_V2 refuses); a vector condition still picks rows; the
values stay exactly; --target litert and unsupported dtypes stay."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import as_bytes, changed, run
from modelbuild import single_op

import tflgraph
from tflgraph.runtime import runtimes

PASSES = ["select-for-tflm", "cleanup"]
RNG = np.random.default_rng(0)
COND = RNG.random((3, 4)) < 0.5


def values(dtype):
    if dtype == "bool":
        return RNG.random((3, 4)) < 0.5, RNG.random((3, 4)) < 0.5
    big = np.iinfo(np.int32).max if dtype == "int32" else 1e30  # extremes: no overflow
    pick = RNG.uniform(-1, 1, (2, 3, 4)) * [[[big]], [[1000]]]
    return pick[0].astype(dtype), pick[1].astype(dtype)


def select(cond, dtype):
    return single_op("SELECT", [cond, *values(dtype)], out_dtype=dtype)


@pytest.mark.parametrize(
    "cond, dtype, ops",
    [
        (COND, "float32", {"SELECT_V2": 1}),
        (COND[:, 0], "float32", {"RESHAPE": 1, "SELECT_V2": 1}),  # picks rows
        (COND, "int32", {"CAST": 2, "LOGICAL_NOT": 1, "MUL": 2, "ADD": 1}),
        (COND[:, 0], "int32", {"RESHAPE": 1, "CAST": 2, "LOGICAL_NOT": 1, "MUL": 2, "ADD": 1}),
    ],
)
def test_select_runs_in_tflm_with_the_same_values(cond, dtype, ops):
    original, feeds = select(cond, dtype)
    with pytest.raises(runtimes.RuntimeUnavailable, match="SELECT"):
        runtimes.run_isolated(as_bytes(original), [feeds], "tflm", modes=("reset",))
    (want,) = runtimes.run_isolated(as_bytes(original), [feeds], "litert", modes=("reset",))[
        "reset"
    ][0]
    model, records = run(tflgraph.load(as_bytes(original)), PASSES, target="tflm")
    assert changed(records, "select-for-tflm") and model.op_counts() == ops
    for rt in ("litert", "tflm"):
        (got,) = runtimes.run_isolated(as_bytes(model), [feeds], rt, modes=("reset",))["reset"][0]
        np.testing.assert_array_equal(got, want)


def test_litert_and_unsupported_dtypes_keep_select():
    _, records = run(select(COND, "float32")[0], PASSES, target="litert")
    assert not changed(records, "select-for-tflm")
    model, records = run(select(COND, "bool")[0], PASSES, target="tflm")
    assert not changed(records, "select-for-tflm") and model.op_counts() == {"SELECT": 1}
    assert any("BOOL values" in e for r in records for e in r.explanations)
