"""Compute REDUCE_ANY (Keras masking: "does this step have any non-padding feature") with
ops TFLM has: it has no REDUCE_ANY.

Pattern:   y = REDUCE_ANY(x, axes) over a bool tensor x (keep_dims either way), in any subgraph.
Rewrite:   y = GREATER(REDUCE_MAX(CAST(x, float32), axes), 0.0), same axes and keep_dims.
Exact:     CAST maps False -> 0.0 and True -> 1.0; the maximum over the reduced axes is 1.0
           exactly when one of them is True, else 0.0 (an empty reduction gives the lowest
           float, and GREATER than 0 is False, as ANY of nothing is). No rounding anywhere.
Checked:   the old and new y are evaluated on the reference interpreter for random bool
           inputs before the rewrite (a mismatch leaves the op); tests/passes/
           test_reduce_any_for_tflm.py compares the masked-LSTM fixture in LiteRT and TFLM.
Target:    `tflm` and `any` (both runtimes); `litert` keeps REDUCE_ANY, which it runs.
Invariant: every model output is bit-identical; every op emitted runs in TFLM and LiteRT.
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.schema import new_options, tensor_type_of
from tflgraph.ir import Operator, Subgraph
from tflgraph.legalize import RewriteForTflm
from tflgraph.pipeline import register
from tflgraph.reference.equivalence import check_equal


@register("reduce-any-for-tflm")
class ReduceAnyForTflm(RewriteForTflm):
    """Rewrite REDUCE_ANY of bools as GREATER(REDUCE_MAX(CAST(x, float32)), 0) for TFLM."""

    op_type, kept = "REDUCE_ANY", "runs REDUCE_ANY"

    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        x, axes = op.inputs[0], op.inputs[1]
        y = op.outputs[0]
        if x.dtype != np.bool_ or y.dtype != np.bool_:
            self.explain(f"REDUCE_ANY -> {y.name}: operand is {x.type_name}, not BOOL")
            return False
        as_float = sg.new_tensor(f"{x.name}_as_float", x.shape, "float32")
        cast = sg.add_op(
            "CAST",
            [x],
            [as_float],
            new_options(
                "CastOptions",
                in_data_type=tensor_type_of(np.bool_),
                out_data_type=tensor_type_of(np.float32),
            ),
        )
        largest = sg.new_tensor(f"{y.name}_max", y.shape, "float32")
        keep_dims = bool(op.options.get("keep_dims", False)) if op.options else False
        reduce = sg.add_op(
            "REDUCE_MAX",
            [as_float, axes],
            [largest],
            new_options("ReducerOptions", keep_dims=keep_dims),
        )
        new_y = sg.new_tensor(f"{y.name}_any", y.shape, "bool")
        greater = sg.add_op("GREATER", [largest, sg.new_constant(np.float32(0.0), "zero")], [new_y])
        why = check_equal(sg, y, new_y, region={op, cast, reduce, greater})
        if why is not None:
            self.explain(f"REDUCE_ANY -> {y.name}: refused: {why}")
            return False  # the new ops are dead: the pipeline removes them
        new_y.shape_signature = y.shape_signature
        sg.replace_all_uses(y, new_y, keep_name=True)
        return True
