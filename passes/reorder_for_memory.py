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
Cost:      the programme visits every set of ops closed under "runs before"; a subgraph with
           more than MAX_STATES such sets keeps its order (explained).
Invariant: every model output is bit-identical, invoke after invoke.
"""

from __future__ import annotations

from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import SIDE_EFFECT_OPS, Pass, register
from tflgraph.runtime import planner

MAX_STATES = 1000
MIN_GAIN = 16  # bytes: TFLM aligns every tensor to 16, a smaller gain may not survive that


@register("reorder-for-memory")
class ReorderForMemory(Pass):
    """Order independent branches for the smallest planned TFLM arena."""

    def run(self, model: Model) -> bool:
        self.stats = {"subgraphs_reordered": 0, "layers": []}
        if self.target == "litert":
            return False  # the planner modelled is TFLM's
        for sg in model.subgraphs:
            order = sg.operators
            if len(order) < 3:
                continue
            best = _best_order(sg, order)
            if best is None:
                self.explain(f"{sg.name}: more than {MAX_STATES} partial orders: order kept")
                continue
            before, after = planner.peak(sg, order), planner.peak(sg, best)
            if after <= before - MIN_GAIN:
                sg.reorder(best)
                self.stats["subgraphs_reordered"] += 1
                self.stats["layers"].append(
                    f"subgraph {sg.name!r}: predicted planner peak {before:,} -> {after:,} bytes"
                )
        return bool(self.stats["subgraphs_reordered"])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        return stats.get("layers", [])


def _best_order(sg: Subgraph, order: list[Operator]) -> list[Operator] | None:
    """The order with the smallest peak of live bytes, or None past MAX_STATES."""
    index = {op: i for i, op in enumerate(order)}
    after = _dependencies(sg, order)
    keep = {t for t in sg.outputs if t is not None}  # alive to the end
    memo: dict[frozenset, tuple[int, tuple[int, ...]]] = {}

    def planned_outputs(op: Operator) -> list:
        return [t for t in op.outputs if t is not None and planner.planned(t)]

    def step(done: frozenset, alive: frozenset, op: Operator) -> tuple[int, frozenset]:
        """(bytes alive while `op` runs after `done`, what is alive after it): the tensors
        alive before, op's outputs and scratch; then those of op's inputs and outputs that
        nobody reads any more drop out."""
        outs = planned_outputs(op)
        during = sum(planner.nbytes(t) for t in alive) + planner.scratch_bytes(op)
        during += sum(planner.nbytes(t) for t in outs if t not in alive)
        now = done | {op}
        read = [t for t in op.inputs if t is not None and t in alive]
        drop = {
            t for t in (*read, *outs) if t not in keep and all(c in now for c in sg.consumers(t))
        }
        return during, frozenset((alive | set(outs)) - drop)

    def best(done: frozenset, alive: frozenset) -> tuple[int, tuple[int, ...]]:
        if len(done) == len(order):
            return 0, ()
        if done in memo:
            return memo[done]
        if len(memo) > MAX_STATES:
            raise _TooMany
        found = None
        for op in order:
            if op not in done and after[op] <= done:
                during, alive_after = step(done, alive, op)
                rest_peak, rest = best(done | {op}, alive_after)
                cand = (max(during, rest_peak), (index[op], *rest))
                if found is None or cand < found:
                    found = cand
        memo[done] = found
        return found

    inputs = frozenset(t for t in sg.inputs if t is not None and planner.planned(t))
    try:
        _, picks = best(frozenset(), inputs)
    except _TooMany:
        return None
    return [order[i] for i in picks]


class _TooMany(Exception):
    """The dynamic programme would visit more than MAX_STATES sets."""


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
                if id(t) in last_on:
                    deps[op].add(last_on[id(t)])
                last_on[id(t)] = op
        if op.type in SIDE_EFFECT_OPS or op.type.startswith("CUSTOM:") or op.subgraphs():
            if last_effect is not None:
                deps[op].add(last_effect)
            last_effect = op
    return {op: frozenset(d) for op, d in deps.items()}
