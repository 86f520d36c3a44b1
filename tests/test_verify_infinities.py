"""tflgraph.verify on outputs with infinite elements: an infinity in the reference neither
widens the tolerance nor hides a wrong finite element (both were once reported as equal)."""

from __future__ import annotations

import numpy as np
import pytest
from modelbuild import Const, single_op

from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import Port, _compare, verify


def port(dtype=np.float32) -> Port:
    return Port("y", "y", (3,), np.dtype(dtype), 0.0, 0)


def test_an_infinity_in_the_reference_does_not_widen_the_tolerance():
    """A = [inf, 0, 1], B = [inf, 0, 5]: the last element is off by 4. The bound is 1e-5 x
    max(1, max finite |A|), not 1e-5 x 1.8e308 (nan_to_num turned inf into the largest float)."""
    a, b = np.array([np.inf, 0, 1], np.float32), np.array([np.inf, 0, 5], np.float32)
    abs_err, _, tol, ok, _ = _compare([a], [b], port(), port(), None, None)
    assert abs_err == pytest.approx(4.0)
    assert tol == pytest.approx(1e-5) and not ok
    # infinities that agree are still equal
    assert _compare([a], [a.copy()], port(), port(), None, None)[3]


@pytest.mark.skipif(not runtimes.available("litert"), reason="needs ai-edge-litert")
def test_models_with_an_infinite_output_element_and_a_wrong_other_element_differ():
    """y = x * [inf, 1, 1] against y = x * [inf, 1, 2] in LiteRT: different."""
    x = np.ones(3, np.float32)
    a, _ = single_op("MUL", [x, Const(np.array([np.inf, 1, 1], np.float32))])
    b, _ = single_op("MUL", [x, Const(np.array([np.inf, 1, 2], np.float32))])
    report = verify(a, b, runtime="litert", samples=2)
    assert report.verdict == "different", report.format()
