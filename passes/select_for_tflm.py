"""Write SELECT with ops TFLM has (it has no SELECT: "Didn't find op for builtin opcode
'SELECT'", and its SELECT_V2 takes float32, int8 and int16 values only).

Pattern:   y = SELECT(cond, a, b) in any subgraph: Keras' Embedding wraps negative indices
           so (idx < 0 ? idx + n : idx), and published text LSTMs start with it.
Rewrite:   cond' = cond when it has a's shape, or RESHAPE(cond, [n, 1, ..., 1]) when cond is
           the vector [n] that SELECT lets pick whole rows of an `a` of rank > 1 (SELECT_V2
           broadcasts a vector along the last axis instead); then
             float32 a, b:  y = SELECT_V2(cond', a, b)
             int32 a, b:    y = a * CAST(cond', int32) + b * CAST(LOGICAL_NOT(cond'), int32)
           a and b must have one shape (SELECT does not broadcast them); other dtypes and
           quantized values stay.
Exact:     SELECT_V2 picks a where cond is true and b elsewhere, element by element, without
           arithmetic; the integer form multiplies each element by 1 and the other by 0 and
           adds the 0, which no int32 value overflows; with cond' shaped [n, 1, ...]
           broadcasting repeats cond[i] over row i, SELECT's row choice.
Checked:   the old and new y are evaluated on the reference interpreter for random inputs of
           their dtypes before the rewrite (a mismatch leaves the op); tests/passes/
           test_select_for_tflm.py runs both forms in LiteRT and TFLM.
Target:    `tflm` and `any` (both runtimes); `litert` keeps SELECT, which it runs.
Invariant: every model output is bit-identical; every op emitted runs in TFLM and LiteRT.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tflgraph.io.schema import Options, new_options, tensor_type_of
from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.legalize import RewriteForTflm
from tflgraph.pipeline import register
from tflgraph.reference.equivalence import check_equal

BOOL, INT32 = tensor_type_of(np.bool_), tensor_type_of(np.int32)


@register("select-for-tflm")
class SelectForTflm(RewriteForTflm):
    """Rewrite SELECT as SELECT_V2 (float32) or integer arithmetic (int32) for TFLM."""

    op_type, kept = "SELECT", "runs SELECT"

    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        cond, a, b = op.inputs
        out = op.outputs[0]
        why = _unsupported(cond, a, b, out)
        if why:
            self.explain(f"SELECT -> {out.name}: left alone: {why}")
            return False
        ops = {op}

        def add(kind, inputs, shape, dtype, options=None):
            t = sg.new_tensor(f"{out.name}/{kind.lower()}", shape, dtype)
            ops.add(sg.add_op(kind, inputs, [t], options or {}))
            return t

        if tuple(cond.shape) != tuple(a.shape):  # a vector condition picks rows
            rows = (cond.shape[0],) + (1,) * (len(a.shape) - 1)
            shape = sg.new_constant(np.array(rows, np.int32), f"{cond.name}/rows")
            cond = add("RESHAPE", [cond, shape], rows, "bool", {"new_shape": list(rows)})
        if a.dtype == np.float32:
            new = add("SELECT_V2", [cond, a, b], out.shape, out.dtype)
        else:  # int32: TFLM's SELECT_V2 refuses it
            to_int = new_options("CastOptions", in_data_type=BOOL, out_data_type=INT32)
            take_a = add("CAST", [cond], cond.shape, "int32", to_int)
            not_cond = add("LOGICAL_NOT", [cond], cond.shape, "bool")
            take_b = add("CAST", [not_cond], cond.shape, "int32", Options(to_int.kind, to_int))
            parts = [add("MUL", [x, k], out.shape, "int32") for x, k in ((a, take_a), (b, take_b))]
            new = add("ADD", parts, out.shape, "int32")
        why = check_equal(sg, out, new, region=ops, feeds=partial(_feeds, ops), rtol=0.0)
        if why is not None:
            self.explain(f"SELECT -> {out.name}: refused: {why}")
            return False  # the new ops are dead: the pipeline removes them
        sg.replace_all_uses(out, new, keep_name=True)
        return True


def _unsupported(cond: Tensor, a: Tensor, b: Tensor, out: Tensor) -> str | None:
    """Why this SELECT is not rewritten, or None."""
    if any(t.is_dynamic for t in (cond, a, b, out)):
        return "a dynamic shape"
    if tuple(a.shape) != tuple(b.shape):
        return f"its values have shapes {list(a.shape)} and {list(b.shape)}"
    if a.dtype not in (np.float32, np.int32) or any(t.is_quantized for t in (a, b, out)):
        return f"{a.type_name} values (TFLM selects float32, int8, int16)"
    rows = len(cond.shape) == 1 and len(a.shape) > 1 and cond.shape[0] == a.shape[0]
    if tuple(cond.shape) != tuple(a.shape) and not rows:
        return f"condition shape {list(cond.shape)} for values {list(a.shape)}"
    return None


def _feeds(ops: set[Operator], rng: np.random.Generator) -> dict:
    """Random values of each dtype for the inputs of the old and new ops that are not
    constants or produced among them."""
    made = {id(t) for op in ops for t in op.outputs}
    feeds = {}
    for op in ops:
        for t in op.inputs:
            if t is None or t.is_constant or id(t) in made or t in feeds:
                continue
            if t.dtype.kind == "b":
                feeds[t] = rng.random(t.shape) < 0.5
            elif t.dtype.kind == "f":
                feeds[t] = rng.uniform(-1, 1, t.shape).astype(t.dtype)
            else:
                feeds[t] = rng.integers(-100, 100, t.shape).astype(t.dtype)
    return feeds
