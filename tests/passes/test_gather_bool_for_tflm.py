"""gather-bool-for-tflm: GATHER of bools (a mask read per loop step) goes through int8, which
TFLM's GATHER takes; the values stay; --target litert and non-bool GATHERs stay."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import as_bytes, changed, run
from modelbuild import Const, single_op

from tflgraph import new_options
from tflgraph.runtime import runtimes

PASSES = ["gather-bool-for-tflm", "cleanup"]
MASK = np.array([[True, False, True], [False, False, False], [True, True, True]])


def gather(params, axis=0):
    return single_op(
        "GATHER",
        [params, np.array([2, 0], np.int32)],
        new_options("GatherOptions", axis=axis),
    )


@pytest.mark.parametrize("axis", [0, 1])
def test_bool_gather_runs_in_tflm_with_the_same_values(axis):
    original, feeds = gather(MASK, axis)
    with pytest.raises(runtimes.RuntimeUnavailable, match="BOOL"):
        runtimes.run_isolated(as_bytes(original), [feeds], "tflm", modes=("reset",))
    model, _ = gather(MASK, axis)
    _, records = run(model, PASSES, target="tflm")
    assert changed(records, "gather-bool-for-tflm")
    assert model.op_counts() == {"CAST": 2, "GATHER": 1}
    want = np.take(MASK, [2, 0], axis=axis)
    for rt in ("litert", "tflm"):
        got = runtimes.run_isolated(as_bytes(model), [feeds], rt, modes=("reset",))
        np.testing.assert_array_equal(got["reset"][0][0], want)


def test_litert_and_float_gathers_stay():
    model, _ = gather(MASK)
    _, records = run(model, PASSES, target="litert")
    assert not changed(records, "gather-bool-for-tflm")
    model, _ = single_op(
        "GATHER",
        [MASK.astype(np.float32), Const(np.array([1], np.int32))],
        new_options("GatherOptions", axis=0),
    )
    _, records = run(model, PASSES, target="tflm")
    assert not changed(records, "gather-bool-for-tflm") and model.op_counts() == {"GATHER": 1}
