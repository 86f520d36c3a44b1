"""densify-weights: DENSIFY of sparse weights becomes a dense constant for TFLM (which has no
DENSIFY); the outputs stay bit-identical; --target litert keeps the sparse weights."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    assert_gives_litert_reference,
    assert_same_outputs,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
)
from modelbuild import densify_add_model

from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

PASSES = ["densify-weights", "cleanup"]


def test_sparse_fixture_runs_in_tflm_with_the_same_outputs():
    with pytest.raises(runtimes.RuntimeUnavailable, match="DENSIFY"):
        runtimes.run_isolated(fixture("sparse").read_bytes(), [], "tflm")
    model, records = run("sparse", PASSES, target="tflm")
    assert changed(records, "densify-weights")
    assert model.op_counts() == {"FULLY_CONNECTED": 2} and unsupported_ops(model, "tflm") == {}
    stats = next(r.stats for r in records if r.name == "densify-weights")
    assert stats == {"ops": 2, "bytes_before": 1780, "bytes_after": 4 * (64 * 64 + 10 * 64)}
    assert_same_outputs(fixture("sparse"), model, ("litert",), exact=True)
    assert_gives_litert_reference(fixture("sparse"), model, ("tflm",))
    assert_second_run_changes_nothing("sparse", PASSES, "tflm")


def test_block_sparse_constant_becomes_the_dense_array():
    dense = np.arange(32, dtype=np.float32).reshape(4, 8) - 10
    dense[:2, 4:] = 0
    model = densify_add_model(dense, (2, 4))
    _, records = run(model, PASSES, target="any")
    assert changed(records, "densify-weights") and model.op_counts() == {"ADD": 1}
    (add,) = model.main.operators
    np.testing.assert_array_equal(add.inputs[1].data, dense)


def test_litert_keeps_sparse_weights():
    model, records = run("sparse", PASSES, target="litert")
    assert not changed(records, "densify-weights")
    assert model.op_counts()["DENSIFY"] == 2
