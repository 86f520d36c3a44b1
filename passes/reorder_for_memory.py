"""Run the ops of independent branches in the order that needs the smallest TFLM arena.

Pattern:   a subgraph whose ops can run in more than one order (independent branches: the two
           directions of a bidirectional layer, parallel convolutions, several heads).
Rewrite:   the execution order (the order of the operators in the file, which TFLM runs and
           plans by) becomes the one with the smallest predicted planner peak: the largest
           sum of live tensor bytes over the ops (tflgraph.runtime.planner), found by the
           dynamic programme of Liberis & Lane ("Neural networks on microcontrollers: saving
           memory at inference via operator reordering", 2019) over the sets of ops already
           run. Kept only when its peak is at least MIN_GAIN bytes below the current order's.
Proof:     exact by construction: every op still runs after the ops computing its inputs;
           ops that share a variable tensor (a fused LSTM's reset and its chunks, which
           update their states in place) and ops with side effects keep their relative
           order. Each op computes the same values from the same inputs.
Cost:      the programme visits every set of ops closed under "runs before" (exponential in
           the number of independent branches); a subgraph that needs more than MAX_STEPS op
           placements, or has more than MAX_OPS ops, keeps its order (explained); a subgraph
           unchanged since the pass last weighed it is not weighed again.
Invariant: every model output is bit-identical, invoke after invoke.
"""

from __future__ import annotations

import weakref

from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import SIDE_EFFECT_OPS, Pass, register
from tflgraph.runtime import planner

MAX_STEPS = 600  # op placements weighed per subgraph: the GRU loop bodies need 300-600
MAX_OPS = 128  # larger subgraphs keep their order (the programme would not finish in budget)
# subgraph -> its `edits` count when this pass last settled its order: the pipeline repeats
# to a fixed point, and an unchanged subgraph need not be weighed again
_SETTLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
MIN_GAIN = 16  # bytes: TFLM aligns every tensor to 16, a smaller gain may not survive that


@register("reorder-for-memory")
class ReorderForMemory(Pass):
    """Order independent branches for the smallest planned TFLM arena."""

    def run(self, model: Model) -> bool:
        self.stats = {"subgraphs_reordered": 0, "layers": []}
        if self.target == "litert":
            return False  # the planner modelled is TFLM's
        for sg in model.subgraphs:
            if _SETTLED.get(sg) != sg.edits and 3 <= sg.num_ops:
                self._reorder(sg)
                _SETTLED[sg] = sg.edits
        return bool(self.stats["subgraphs_reordered"])

    def _reorder(self, sg: Subgraph) -> None:
        order = sg.operators
        best = _best_order(sg, order) if len(order) <= MAX_OPS else None
        if best is None:
            self.explain(
                f"{sg.name}: more than {MAX_OPS} ops or {MAX_STEPS} placements to weigh: order kept"
            )
            return
        before, after = planner.peak(sg, order), planner.peak(sg, best)
        if after <= before - MIN_GAIN:
            sg.reorder(best)
            self.stats["subgraphs_reordered"] += 1
            self.stats["layers"].append(
                f"subgraph {sg.name!r}: predicted planner peak {before:,} -> {after:,} bytes"
            )

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        return stats.get("layers", [])


def _best_order(sg: Subgraph, order: list[Operator]) -> list[Operator] | None:
    """The order with the smallest peak of live bytes, or None past MAX_STEPS placements.
    Ops are bits of an int (the set of ops run so far); sizes and readers are read once."""
    bit = {op: 1 << i for i, op in enumerate(order)}
    after = {op: sum(bit[d] for d in deps) for op, deps in _dependencies(sg, order).items()}
    size, readers = {}, {}
    for t in sg.tensors:
        if planner.planned(t):
            size[t] = planner.nbytes(t)
            readers[t] = sum(bit[c] for c in sg.consumers(t) if c in bit)
    for t in sg.outputs:
        if t in readers:
            readers[t] = -1  # alive to the end: never all read
    outs = {op: [t for t in op.outputs if t in size] for op in order}
    ins = {op: [t for t in op.inputs if t in size] for op in order}
    scratch = {op: planner.scratch_bytes(op) for op in order}
    everything = (1 << len(order)) - 1
    memo: dict[int, tuple[int, int]] = {}
    budget = [MAX_STEPS]

    def step(done: int, alive: frozenset, held: int, op: Operator):
        """(bytes alive while `op` runs after `done`, what is alive after it and its bytes):
        the tensors alive before, op's outputs and scratch; then those of op's inputs and
        outputs that nobody reads any more drop out."""
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooMany
        new = [t for t in outs[op] if t not in alive]
        during = held + sum(size[t] for t in new) + scratch[op]
        now = done | bit[op]
        drop = {
            t
            for t in (*ins[op], *outs[op])
            if (t in alive or t in new) and readers[t] >= 0 and readers[t] & ~now == 0
        }
        kept = (alive | set(new)) - drop
        return during, kept, held + sum(size[t] for t in new) - sum(size[t] for t in drop)

    def best(done: int, alive: frozenset, held: int) -> int:
        """The smallest peak of the ops not in `done`; memo[done] = (peak, op to run next)."""
        if done == everything:
            return 0
        if done in memo:
            return memo[done][0]
        found = None
        for i, op in enumerate(order):
            if not done & bit[op] and after[op] & ~done == 0:
                during, alive_after, held_after = step(done, alive, held, op)
                peak = max(during, best(done | bit[op], alive_after, held_after))
                if found is None or peak < found[0]:
                    found = (peak, i)
        memo[done] = found
        return found[0]

    inputs = frozenset(t for t in sg.inputs if t in size)
    try:
        best(0, inputs, sum(size[t] for t in inputs))
    except _TooMany:
        return None
    picks, done = [], 0
    while done != everything:
        op = order[memo[done][1]]
        picks.append(op)
        done |= bit[op]
    return picks


class _TooMany(Exception):
    """The dynamic programme would weigh more than MAX_STEPS placements."""


def _dependencies(sg: Subgraph, order: list[Operator]) -> dict[Operator, frozenset]:
    """The ops each op must run after: the producers of its inputs, the previous op touching
    each variable tensor it touches, and the previous op with effects beyond its outputs
    (resource variables, custom ops, ops that call subgraphs)."""
    deps: dict[Operator, set] = {op: set() for op in order}
    last_on: dict = {}
    last_effect = None
    for op in order:
        deps[op] |= {sg.producer(t) for t in op.inputs if t is not None} - {None}
        for t in (*op.inputs, *op.outputs):
            if t is not None and t.is_variable:
                if last_on.get(id(t), op) is not op:  # (a tensor may be two operands)
                    deps[op].add(last_on[id(t)])
                last_on[id(t)] = op
        if op.type in SIDE_EFFECT_OPS or op.type.startswith("CUSTOM:") or op.subgraphs():
            if last_effect is not None:
                deps[op].add(last_effect)
            last_effect = op
    return {op: frozenset(d) for op, d in deps.items()}
