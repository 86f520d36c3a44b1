"""tflgraph.verify on outputs with infinite elements: an infinity in the reference neither
widens the tolerance nor hides a wrong finite element (both were once reported as equal)."""

from __future__ import annotations

import numpy as np
import pytest
from modelbuild import Const, single_op

from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import verify

pytestmark = pytest.mark.skipif(not runtimes.available("litert"), reason="needs ai-edge-litert")


def scaled(factors):
    """y = x * factors, x a float32 [3] input."""
    x = np.ones(3, np.float32)
    return single_op("MUL", [x, Const(np.array(factors, np.float32))])[0]


def test_an_infinity_in_the_reference_does_not_widen_the_tolerance():
    """A = [inf, 0, 1], B = [inf, 0, 5]: the last element is off by 4. The bound is 1e-5 x
    max(1, max finite |A|), not 1e-5 x 1.8e308 (nan_to_num turned inf into the largest float)."""
    a, b = scaled([np.inf, 0, 1]), scaled([np.inf, 0, 5])
    ones = [np.ones(3, np.float32)]
    (row,) = verify(a, b, "litert", inputs=ones, modes=("reset",)).rows
    assert row.max_abs == pytest.approx(4.0)
    assert row.tolerance == pytest.approx(1e-5) and not row.equal
    # infinities that agree are still equal
    assert verify(a, scaled([np.inf, 0, 1]), "litert", inputs=ones).verdict == "equal"


def test_models_with_an_infinite_output_element_and_a_wrong_other_element_differ():
    """y = x * [inf, 1, 1] against y = x * [inf, 1, 2] in LiteRT: different."""
    a, b = scaled([np.inf, 1, 1]), scaled([np.inf, 1, 2])
    report = verify(a, b, runtime="litert", samples=2)
    assert report.verdict == "different", report.format()
