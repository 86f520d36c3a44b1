"""Give WHILE-loop RNNs static shapes, so that TFLM (which has no dynamic tensors) runs them.

Pattern:   (1) a recurrent WHILE loop (tflgraph.rnn.loops.analyze_loop) whose body writes its
           per-step output h' [B, u] into the [T, B, u] accumulator with the converter's
           dynamic-shape idiom
               acc' = CONCATENATION(SLICE(acc, [0, 0, 0], [t, -1, -1]),
                                    RESHAPE(h', [1, B, u]),
                                    SLICE(acc, [t + 1, 0, 0], [-1, -1, -1]))
           (the SLICEs have shape_signature -1: TFLM returns wrong values or never stops);
           (2) SPLIT_V whose size_splits hold -1 (tf_keras GRU reset_after=False splits
           [16, 16, -1] and leaves a zero-size third output that TFLM cannot allocate).
Rewrite:   (1) acc' = DYNAMIC_UPDATE_SLICE(acc, RESHAPE(h', [1, B, u]), PACK(t, 0, 0)): the
           accumulator is preallocated by its [T, B, u] initial value and written in place;
           (2) explicit sizes, unused zero-size outputs dropped: SPLIT when the remaining
           parts are equal, else SPLIT_V with constant sizes.
Proof:     (1) analyze_loop proves t runs 0..T-1 with T = len(acc), where both forms write
           h' at row t and keep every other row; the old and new acc' are evaluated on the
           reference interpreter for random body inputs at t = 0, T // 2 and T - 1, and must
           be identical, else nothing is rewritten (hybrid layers in the body, which neither
           form touches, compute their float approximation on both sides). (2) both splits
           are evaluated on random data; the used outputs must be identical.
Invariant: the model's outputs are bit-identical; every body tensor the rewrite touches has
           a static shape; ops emitted (DYNAMIC_UPDATE_SLICE, PACK, SPLIT, SPLIT_V) run in
           both LiteRT and TFLM.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import check_equal
from tflgraph.rnn import loops
from tflgraph.runtime.targets import supports

# both forms copy the same values without arithmetic: bit-identical (NaN meets NaN), no rounding
EXACT = 0.0


@register("static-loop-outputs")
class StaticLoopOutputs(Pass):
    """Write RNN loop outputs into a preallocated accumulator; make SPLIT_V sizes static."""

    def run(self, model: Model) -> bool:
        if not all(supports(self.target, t) for t in ("DYNAMIC_UPDATE_SLICE", "PACK", "SPLIT")):
            self.explain(f"target {self.target} lacks DYNAMIC_UPDATE_SLICE/PACK/SPLIT")
            return False
        rewritten = split_fixed = 0
        for loop in loops.rnn_loops(model, self.explain):
            if loop.acc_kind == "sequence":
                rewritten += self._static_accumulator(loop)
        for sg in model.subgraphs:
            for op in sg.ops_of_type("SPLIT_V"):
                split_fixed += self._static_split(sg, op)
        self.stats = {"accumulators": rewritten, "split_v": split_fixed}
        if self.explanations is not None:  # what is left for TFLM to trip over (--explain)
            self._explain_dynamic(model)
        return bool(rewritten or split_fixed)

    def _explain_dynamic(self, model: Model) -> None:
        for sg in model.subgraphs:
            live = set(sg.outputs).union(*(nx.ancestors(sg.graph, t) for t in sg.outputs))
            dynamic = [t.name for t in live if isinstance(t, Tensor) and t.is_dynamic]
            if dynamic:
                self.explain(f"{sg.name}: still dynamic-shaped: {', '.join(sorted(dynamic)[:3])}")

    # ------------------------------------------------------------------ accumulator
    def _static_accumulator(self, loop: loops.RnnLoop) -> bool:
        body, acc = loop.body, loop.acc
        step = loops.acc_row(loop)  # RESHAPE(h', [1, B, u]) -> acc row
        rank = len(acc.arg.shape)
        zero = body.new_constant(np.zeros((), np.int32), f"{body.name}/acc_index_zero")
        index = body.new_tensor(f"{body.name}/acc_index", (rank,), "int32")
        body.add_op("PACK", [loop.time.arg] + [zero] * (rank - 1), [index],
                    {"values_count": rank, "axis": 0})  # fmt: skip
        new = body.new_tensor(acc.next.name + "/static", acc.arg.shape, acc.arg.dtype)
        body.add_op("DYNAMIC_UPDATE_SLICE", [acc.arg, step, index], [new])
        why = self._same_step(loop, acc.next, new)
        if why:
            self.explain(f"{body.name}: DYNAMIC_UPDATE_SLICE accumulator not proved equal: {why}")
            return False
        body.outputs[acc.index] = new
        return True

    def _same_step(self, loop: loops.RnnLoop, old: Tensor, new: Tensor) -> str | None:
        """None if old and new acc' are identical at t = 0, T // 2 and T - 1, else why not."""
        steps = sorted({0, loop.trip_count // 2, loop.trip_count - 1})
        step = iter(steps)  # one trial per step, drawing from one seeded generator
        return check_equal(
            loop.body,
            old,
            new,
            trials=len(steps),
            feeds=lambda rng: loops.step_feeds(loop, next(step), rng),
            rtol=EXACT,
            hybrid_as_float=True,
        )

    # ------------------------------------------------------------------ SPLIT_V
    def _static_split(self, sg: Subgraph, op: Operator) -> bool:
        x, sizes_t, axis_t = op.inputs
        sizes, axis = loops.const_value(sizes_t), loops.const_value(axis_t)
        if sizes is None or axis is None or x.is_dynamic or -1 not in sizes.tolist():
            return False
        ax = int(axis.reshape(())) % len(x.shape)
        sizes = sizes.astype(np.int64).reshape(-1)
        sizes[sizes == -1] = x.shape[ax] - (sizes.sum() + 1)
        keep = [i for i, n in enumerate(sizes) if n or sg.is_used(op.outputs[i])]
        if any(op.outputs[i].is_dynamic for i in keep):
            return False
        outs, parts = [op.outputs[i] for i in keep], [int(sizes[i]) for i in keep]
        fresh = [sg.new_tensor(t.name + "/static", t.shape, t.dtype) for t in outs]
        loops.add_split(sg, x, axis_t, fresh, parts, f"{x.name}/split_sizes")
        why = check_equal(
            sg,
            outs,
            fresh,
            trials=1,
            feeds=lambda rng: {x: rng.standard_normal(x.shape).astype(x.dtype or np.float32)},
            rtol=EXACT,
        )
        if why:
            self.explain(f"SPLIT_V {outs[0].name}: static split not proved equal: {why}")
            return False
        for t, f in zip(outs, fresh):
            loops.replace_result(sg, t, f)  # a subgraph output keeps its name
        return True
