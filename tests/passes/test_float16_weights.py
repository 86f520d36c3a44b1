"""float16-weights: DEQUANTIZE of float16 weights becomes float32 constants for TFLM (whose
DEQUANTIZE refuses float16); the outputs stay bit-identical; --target litert and DEQUANTIZE
of int8 constants stay."""

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
from modelbuild import Const, single_op

from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import unsupported_ops

PASSES = ["float16-weights", "cleanup"]


def test_fp16_fixture_runs_in_tflm_with_the_same_outputs():
    with pytest.raises(runtimes.RuntimeUnavailable, match="DEQUANTIZE|dequantize"):
        runtimes.run_isolated(fixture("fp16").read_bytes(), [], "tflm")
    model, records = run("fp16", PASSES, target="tflm")
    assert changed(records, "float16-weights")
    assert "DEQUANTIZE" not in model.op_counts() and unsupported_ops(model, "tflm") == {}
    stats = next(r.stats for r in records if r.name == "float16-weights")
    assert stats == {"ops": 6, "bytes_before": 10868, "bytes_after": 21736}
    assert all(t.type_name != "FLOAT16" for t in model.main.tensors)
    assert_same_outputs(fixture("fp16"), model, ("litert",), exact=True)
    assert_gives_litert_reference(fixture("fp16"), model, ("tflm",))
    assert_second_run_changes_nothing("fp16", PASSES, "tflm")


def test_litert_keeps_float16_weights():
    model, records = run("fp16", PASSES, target="litert")
    assert not changed(records, "float16-weights")
    assert model.op_counts()["DEQUANTIZE"] == 6


def test_int8_dequantize_stays():
    """TFLM dequantizes int8 itself: only float16 operands are folded."""
    q = {"scale": np.array([0.5], np.float32), "zero_point": np.array([0], np.int64)}
    model, _ = single_op(
        "DEQUANTIZE", [Const(np.arange(-4, 4, dtype=np.int8), q)], out_dtype="float32"
    )
    model.main.outputs[0].shape = (8,)
    _, records = run(model, PASSES, target="tflm")
    assert not changed(records, "float16-weights")
    assert model.op_counts() == {"DEQUANTIZE": 1}
