"""Replace POW by a constant exponent with the ops it amounts to (TFLM has no POW).

Pattern:   y = POW(x, c), float32, with c a constant whose elements all hold one exponent
           e in {0, 1, 2, 3, 0.5, -0.5, -1} and y of x's shape (c does not broadcast x).
Rewrite:   e = 1: x              e = 2: MUL(x, x)          e = 3: MUL(MUL(x, x), x)
           e = 0: ones           e = 0.5: SQRT(x)          e = -0.5: RSQRT(x)
           e = -1: DIV(1, x)
           Other exponents (1.5, 2.5, -2, ...) stay: no rewrite with TFLM's ops is exact.
Exact:     LiteRT's own POW is not correctly rounded: it is within 1 ulp of x**e rounded
           once, and saturates an overflow to +-FLT_MAX instead of inf. MUL, DIV and SQRT
           round x*x, 1/x, sqrt(x) once (IEEE; LiteRT's XNNPACK SQRT is 1 ulp off), so for
           e = 2, 0.5, -1 the rewrite is the correctly rounded x**e; e = 3 and -0.5 are
           within 1 ulp of it (two roundings; RSQRT's own approximation); e = 1 and 0 are
           bit-exact (pow(x, 0) = 1 for NaN too).
           Negative bases: x**0.5 and x**-0.5 are NaN, as SQRT and RSQRT of a negative are;
           integer exponents keep the sign. Measured on 40,000 floats over the whole range
           (tests/passes/test_pow_by_constant.py), in LiteRT and TFLM: every result within
           2 ulp (2.4e-7 relative: LiteRT's POW and its XNNPACK SQRT are each 1 ulp off,
           in opposite directions) of LiteRT's POW wherever x and the result are normal
           floats below 1e37, far inside the equivalence checker's 1e-5; the same NaNs.
           TF 2.21's converter makes these rewrites itself for 2, 0.5, -0.5, 1 and 0.
Checked:   old and new y are evaluated on the reference interpreter before the rewrite
           (equivalence.check_equal); a mismatch leaves the op.
Target:    `tflm` and `any`; `litert` keeps POW, which it runs.
Invariant: model outputs within 2 ulp of the original's; ops emitted run in TFLM and LiteRT.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.legalize import RewriteForTflm
from tflgraph.pipeline import register
from tflgraph.reference.equivalence import check_equal

EXPONENTS = (0.0, 1.0, 2.0, 3.0, 0.5, -0.5, -1.0)


@register("pow-by-constant")
class PowByConstant(RewriteForTflm):
    """Rewrite POW(x, c) with c in {0, 1, 2, 3, 0.5, -0.5, -1} as MUL/SQRT/RSQRT/DIV (TFLM)."""

    op_type, kept = "POW", "runs POW"

    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        x, c = op.inputs
        y = op.outputs[0]
        e = _exponent(x, c, y)
        if e is None or e not in EXPONENTS:
            self.explain(f"POW -> {y.name}: exponent is not one constant in {EXPONENTS}")
            return False
        new_y, made = self._emit(sg, x, y, e)
        why = check_equal(sg, y, new_y, region={op, *made}) if made or e != 1 else None
        if why is not None:
            self.explain(f"POW -> {y.name}: refused: {why}")
            return False  # the new ops are dead: the pipeline removes them
        sg.replace_all_uses(y, new_y, keep_name=True)
        return True

    def _emit(self, sg: Subgraph, x: Tensor, y: Tensor, e: float) -> tuple[Tensor, list]:
        """The tensor that replaces y, and the ops made for it."""
        made: list[Operator] = []

        def op(op_type, inputs, options=None):
            out = sg.new_tensor(f"{y.name}_{op_type.lower()}", y.shape, "float32")
            out.shape_signature = y.shape_signature
            made.append(sg.add_op(op_type, inputs, [out], options))
            return out

        if e == 1.0:
            return x, made
        if e == 0.0:
            return sg.new_constant(np.ones(y.shape, np.float32), f"{y.name}_ones"), made
        if e == 0.5:
            return op("SQRT", [x]), made
        if e == -0.5:
            return op("RSQRT", [x]), made
        if e == -1.0:
            return op("DIV", [sg.new_constant(np.float32(1.0), "one"), x], {}), made
        square = op("MUL", [x, x], {})
        return (square if e == 2.0 else op("MUL", [square, x], {})), made


def _exponent(x: Tensor, c: Tensor, y: Tensor) -> float | None:
    """The one exponent every element of the constant c holds, if x and y are float32 of
    one shape (c does not broadcast x); else None."""
    if not (x.dtype == np.float32 and y.dtype == np.float32 and tuple(x.shape) == tuple(y.shape)):
        return None
    if c is None or not c.is_constant or c.data is None or c.data.size == 0:
        return None
    values = np.asarray(c.data, np.float64).reshape(-1)
    return float(values[0]) if np.all(values == values[0]) else None
