"""Re-roll an unrolled RNN (`unroll=True`: T copies of one cell in a flat graph) into one loop.

Pattern:   x_0..x_{T-1} = UNPACK(seq [T, B, F], axis 0) (or SPLIT, or one STRIDED_SLICE or
           GATHER per step, along any axis: tflgraph.rnn.reroll_steps); T >= 3 chained
           copies of one cell, step t reading x_t and the previous step's values (last to
           first for a backward layer): the same ops with the same
           weights (one buffer or equal contents) in every middle step, the first step
           specialised as converters write it (zero state folded away), the last step's
           activations fused where it hands nothing on (a relu LSTM's c_T); what leaves the chain
           is the last step's state (h, c) or PACK(y_0..y_{T-1}) (or a CONCATENATION)
           (tflgraph.rnn.reroll_find).
Rewrite:   (t, *states, [acc], seq) = WHILE(0, zeros, [FILL(0)], seq) whose body is one copy
           of the cell, x_t = GATHER(seq, t), the per-step output written with
           DYNAMIC_UPDATE_SLICE (tflgraph.rnn.reroll_loop): the form of a converter's loop
           after static-loop-outputs, so TFLM runs it; the last step's values -> the loop's
           state results, the PACK -> the accumulator. fuse-lstm (next in the default pipeline)
           then turns LSTM loops into UNIDIRECTIONAL_SEQUENCE_LSTM with its own proof, and
           fuse-simple-rnn SimpleRNN loops for LiteRT; GRU and other cells stay one loop.
Proof:     the loop starts from zero states while the converter's first step folded them; the
           chain's and the loop's outputs are evaluated on the reference interpreter on
           random inputs (tflgraph.reference.equivalence.check_equal, 1e-5 relative) and any
           difference leaves the graph as it was (the loop, which nothing reads yet, is
           removed again), with the reason given to --explain.
           Hybrid layers (dynamic-range int8 weights, float activations) are checked as the
           float layers they approximate (the interpreter's hybrid_as_float): the loop
           runs the chain's ops on the chain's values, so the hybrid kernels see the same
           inputs, but for the first step, which the loop computes from zero states (a
           hybrid FULLY_CONNECTED of zeros is its bias); optimize's verification runs the
           hybrid model itself in LiteRT.
Invariant: every model output equals the unrolled graph's within 1e-5; the model stays
           stateless (the loop's states are operands, not variable tensors); float32 only
           (the steps of an int8 chain have their own scales: left alone, with that reason).
"""

from __future__ import annotations

import dataclasses
import os

import networkx as nx

from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import Pass, register, remove_dead_code
from tflgraph.reference.equivalence import check_equal
from tflgraph.rnn.loops import replace_result
from tflgraph.rnn.reroll_find import find_unrolled
from tflgraph.rnn.reroll_loop import build_loop
from tflgraph.rnn.reroll_steps import Steps, sequence_steps
from tflgraph.runtime.targets import supports

_EMITS = (
    "WHILE", "LESS", "GATHER", "ADD", "DYNAMIC_UPDATE_SLICE", "PACK", "RESHAPE", "FILL",
    "TRANSPOSE", "REVERSE_V2",  # batch-major and backward chains
)  # fmt: skip


@register("reroll")
class Reroll(Pass):
    """Re-roll unrolled RNN layers (T copies of one cell) into one WHILE loop."""

    def run(self, model: Model) -> bool:
        self.stats = {"chains_rerolled": 0, "layers": []}
        missing = [op for op in _EMITS if not supports(self.target, op)]
        if missing:
            self.explain(f"target {self.target} lacks {', '.join(missing)}")
            return False
        for sg in list(model.subgraphs):
            for steps in sequence_steps(sg):
                self._reroll_steps(model, sg, _current(steps))
        return bool(self.stats["chains_rerolled"])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """Readable lines for the optimize summary: one per re-rolled chain."""
        return stats.get("layers", [])

    def _reroll_steps(self, model: Model, sg: Subgraph, steps: Steps) -> None:
        """Re-roll the chains that read `steps`: forwards, then backwards (a Bidirectional
        layer reads the steps both ways; a go_backwards layer only from the last). While the
        steps are still read, the first reason a direction was not re-rolled is explained."""
        where = steps.name
        reasons = []
        for backwards in (False, True):
            if not all(op in sg for op in steps.ops):  # every chain reading them re-rolled
                return
            why = self._reroll(model, sg, steps, backwards)
            if why is None:
                self.stats["layers"][-1] = (
                    f"{where}{' backwards' * backwards}: " + (self.stats["layers"][-1])
                )
            else:
                reasons.append(f"{where}: not re-rolled{' backwards' * backwards}: {why}")
        if all(op in sg for op in steps.ops) and reasons:
            self.explain(reasons[0])

    def _reroll(self, model: Model, sg: Subgraph, steps: Steps, backwards: bool):
        """Re-roll the chain of one direction; None, or why not (the graph untouched)."""
        if steps.source.is_dynamic:
            return "the sequence has a dynamic shape (batch None: freeze-shapes first, --batch)"
        chain = find_unrolled(sg, steps, backwards)
        if isinstance(chain, str):
            return chain
        if any(t.type_name != "FLOAT32" for t in (chain.x, *chain.states)):
            return "not float32: int8 chains are not re-rolled yet, even where steps share scales"
        before, subgraphs = set(sg.iter_ops()), len(model.subgraphs)
        loop, moved = build_loop(chain, _layer(chain))
        olds = list(moved)
        why = _prove(sg, steps.source, olds, moved)
        if why is not None:  # nothing reads the loop yet: remove what build_loop added
            for op in reversed([op for op in sg.iter_ops() if op not in before]):
                sg.remove_op(op)
            del model.subgraphs[subgraphs:]
            return f"the loop is not the chain: {why}"
        for old in olds:
            replace_result(sg, old, moved[old])
        remove_dead_code(model)  # the chain's ops, and its UNPACK once no chain reads it
        self.stats["chains_rerolled"] += 1
        self.stats["layers"].append(
            f"{chain.steps} steps of {len(chain.body_ops)} ops -> one WHILE loop"
        )
        return None


def _current(steps: Steps) -> Steps:
    """`steps` with the sequence its ops read now: re-rolling the layer below replaced the
    sequence (that layer's PACK) with its loop's result."""
    op = steps.ops[0]
    return dataclasses.replace(steps, source=op.inputs[1 if op.type == "SPLIT" else 0])


def _layer(chain) -> str:
    """The cell's name scope, 'functional_1/lstm_1' for ops named
    'functional_1/lstm_1/lstm_cell_5/...': the loop is named '<scope>/while' like a
    converter's, so a fused op made of it gets the layer's short name."""
    paths = [
        next((p for p in o.name.split(";") if "/" in p), o.name).split("/")[:-1]
        for op in chain.body_ops
        for o in op.outputs
        if o is not None
    ]
    common = paths[0]
    for p in paths[1:]:
        common = common[: len(os.path.commonprefix([common, p]))]
    if common and "cell" in common[-1]:
        common = common[:-1]
    return "/".join(common) or "rnn"


def _prove(sg: Subgraph, source, olds: list, moved: dict) -> str | None:
    """check_equal of the chain's values and the loop's on random sequences (the ops from
    `source` on: what feeds the sequence is not evaluated), or why they differ. Hybrid
    layers (int8 weights, float activations: dynamic-range models) compute the float layers
    they approximate (`hybrid_as_float`): the loop runs the chain's own ops on the chain's
    values, so equal float results mean equal hybrid ones."""
    news = [moved[t] for t in olds]
    upstream = nx.ancestors(sg.graph, source)
    region = [
        op
        for op in set().union(*(nx.ancestors(sg.graph, t) for t in olds + news))
        if isinstance(op, Operator) and op not in upstream
    ]
    return check_equal(sg, olds, news, region=region, hybrid_as_float=True)
