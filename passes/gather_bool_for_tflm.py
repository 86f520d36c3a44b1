"""Gather bools through int8, which TFLM's GATHER takes (it refuses BOOL params: "Type 'BOOL'
is not supported by gather").

Pattern:   y = GATHER(x, indices) with x bool, in any subgraph: Keras masking reads the step's
           mask inside the loop body as GATHER(mask[T, B, 1], t).
Rewrite:   y = CAST(GATHER(CAST(x, int8), indices), bool), same axis and batch_dims.
Exact:     CAST maps False -> 0 and True -> 1, GATHER copies elements without arithmetic,
           and CAST back maps 0 -> False and 1 -> True: the same bools in the same places.
Checked:   the old and new y are evaluated on the reference interpreter for random bool
           inputs before the rewrite (a mismatch leaves the op); tests/passes/
           test_reduce_any_for_tflm.py runs the masked-LSTM fixture in LiteRT and TFLM.
Target:    `tflm` and `any` (both runtimes); `litert` keeps the bool GATHER, which it runs.
Invariant: every model output is bit-identical; every op emitted runs in TFLM and LiteRT.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tflgraph.io.schema import Options, new_options, tensor_type_of
from tflgraph.ir import Operator, Subgraph
from tflgraph.legalize import RewriteForTflm
from tflgraph.pipeline import register
from tflgraph.reference.equivalence import check_equal


@register("gather-bool-for-tflm")
class GatherBoolForTflm(RewriteForTflm):
    """Rewrite GATHER of bools as CAST(GATHER(CAST(x, int8)), bool) for TFLM."""

    op_type, kept = "GATHER", "gathers bools"

    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        x, y = op.inputs[0], op.outputs[0]
        if x.dtype != np.bool_:
            return False  # not a candidate: nothing to explain
        x8 = sg.new_tensor(f"{x.name}_int8", x.shape, "int8", shape_signature=x.shape_signature)
        y8 = sg.new_tensor(f"{y.name}_int8", y.shape, "int8", shape_signature=y.shape_signature)
        new_y = sg.new_tensor(f"{y.name}_bool", y.shape, "bool", shape_signature=y.shape_signature)
        ops = {
            op,
            sg.add_op("CAST", [x], [x8], _cast(np.bool_, np.int8)),
            sg.add_op("GATHER", [x8, *op.inputs[1:]], [y8], _copy(op.options)),
            sg.add_op("CAST", [y8], [new_y], _cast(np.int8, np.bool_)),
        }
        why = check_equal(sg, y, new_y, region=ops, feeds=partial(_feeds, op))
        if why is not None:
            self.explain(f"GATHER -> {y.name}: refused: {why}")
            return False  # the new ops are dead: the pipeline removes them
        sg.replace_all_uses(y, new_y, keep_name=True)
        return True


def _cast(src, dst):
    return new_options(
        "CastOptions", in_data_type=tensor_type_of(src), out_data_type=tensor_type_of(dst)
    )


def _feeds(op: Operator, rng: np.random.Generator) -> dict:
    """Random bools for the gathered tensor and valid indices (a loop counter has no random
    values of its own) for whichever of the two is not a constant."""
    x, indices = op.inputs[0], op.inputs[1]
    axis = op.options.get("axis", 0) if op.options else 0
    feeds = {}
    if not x.is_constant:
        feeds[x] = rng.random(x.shape) < 0.5
    if not indices.is_constant:
        n = x.shape[axis]
        feeds[indices] = rng.integers(0, n, indices.shape).astype(indices.dtype)
    return feeds


def _copy(options: Options | None) -> Options | None:
    """The old op's options for the new one (never shared between ops)."""
    return Options(options.kind, options) if options is not None else None
