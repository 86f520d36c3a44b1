"""reduce-any-for-tflm: REDUCE_ANY (Keras masking) becomes CAST -> REDUCE_MAX -> GREATER, which
TFLM has; with gather-bool-for-tflm the masked Keras LSTM runs in TFLM with LiteRT's outputs of
the original. --target litert keeps REDUCE_ANY."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    as_bytes,
    assert_gives_litert_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
)
from modelbuild import Const, single_op

from tflgraph import new_options
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

PASSES = ["reduce-any-for-tflm", "gather-bool-for-tflm", "cleanup"]


def test_masked_lstm_runs_in_tflm_with_the_original_outputs():
    with pytest.raises(runtimes.RuntimeUnavailable, match="REDUCE_ANY"):
        runtimes.run_isolated(fixture("k3_lstm_masked").read_bytes(), [], "tflm")
    model, records = run("k3_lstm_masked", PASSES, target="tflm")
    assert changed(records, "reduce-any-for-tflm") and changed(records, "gather-bool-for-tflm")
    counts = model.op_counts()
    assert "REDUCE_ANY" not in counts and unsupported_ops(model, "tflm") == {}
    assert counts["REDUCE_MAX"] == 2 and counts["GREATER"] == 2
    assert_same_outputs(fixture("k3_lstm_masked"), model, ("litert",), exact=True)
    assert_gives_litert_reference(fixture("k3_lstm_masked"), model, ("tflm",))
    assert_second_run_changes_nothing("k3_lstm_masked", PASSES, "tflm")


@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("axes", [[1], [0, 2], [-1]])
def test_single_reduce_any_equals_litert_in_both_runtimes(axes, keep_dims):
    x = np.zeros((3, 4, 5), bool)
    x[0, 1, 2] = x[2, :, 4] = x[1, 3, 0] = True  # rows all False, one True, all True
    model, feeds = single_op(
        "REDUCE_ANY",
        [x, Const(np.array(axes, np.int32))],
        new_options("ReducerOptions", keep_dims=keep_dims),
    )
    original = as_bytes(model)
    _, records = run(model, PASSES, target="any")
    assert changed(records, "reduce-any-for-tflm") and "REDUCE_ANY" not in model.op_counts()
    want = runtimes.run_isolated(original, [feeds], "litert", modes=("reset",))
    for rt in ("litert", "tflm"):
        got = runtimes.run_isolated(as_bytes(model), [feeds], rt, modes=("reset",))
        np.testing.assert_array_equal(got["reset"][0][0], want["reset"][0][0])
        np.testing.assert_array_equal(
            got["reset"][0][0], x.any(axis=tuple(axes), keepdims=keep_dims)
        )


def test_litert_keeps_reduce_any():
    model, records = run("k3_lstm_masked", PASSES, target="litert")
    assert not any(r.changed for r in records if r.name != "cleanup")
    assert model.op_counts()["REDUCE_ANY"] == 2
