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
           int8 chains: the loop runs the chain's int8 ops, checked on the real kernels:
           the model with the loop and the model as the pass got it run in LiteRT (builtin
           kernels) and TFLM on random inputs, five invokes in a row without reset, and the
           largest output difference, in quantization steps, must be 0, or at most
           `requantize` (below); otherwise the chain stays, with the measured error given.
Requantize: a converter's int8 chain has its own calibrated scales in every step, so it is
           no repeated cell and stays, unless the `requantize` option (`optimize
           --requantize STEPS`) gives a bound: then steps that differ only in quantization
           parameters are one cell, and the body gets one set of parameters per recurring
           value, the union of the steps' ranges (tflgraph.rnn.reroll_requant; fixed-scale
           outputs, the sequence's and biases' rules there), the loop's results going through
           a QUANTIZE where the chain's readers expect other parameters.
Invariant: every model output equals the unrolled graph's within 1e-5 (float; int8: equal,
           or within the `requantize` bound); the model stays stateless (the loop's states
           are operands, not variable tensors).
"""

from __future__ import annotations

import dataclasses
import os
import weakref

import networkx as nx

from tflgraph.io.reader import load
from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import Option, Pass, register, remove_dead_code
from tflgraph.reference.equivalence import check_equal
from tflgraph.rnn.loops import replace_result
from tflgraph.rnn.reroll_find import find_unrolled
from tflgraph.rnn.reroll_loop import build_loop
from tflgraph.rnn.reroll_requant import measure, requantize
from tflgraph.rnn.reroll_steps import Steps, sequence_steps
from tflgraph.runtime.targets import supports

_EMITS = (
    "WHILE", "LESS", "GATHER", "ADD", "DYNAMIC_UPDATE_SLICE", "PACK", "RESHAPE", "FILL",
    "TRANSPOSE", "REVERSE_V2",  # batch-major and backward chains
)  # fmt: skip


# each model as reroll first saw an int8 chain in it, a copy: the pipeline runs the pass
# again (fixed point), and every int8 check measures the error from there, all chains together
_ORIGINALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@register("reroll")
class Reroll(Pass):
    """Re-roll unrolled RNN layers (T copies of one cell) into one WHILE loop."""

    requantize = Option(
        0.0,
        "re-roll int8 chains whose steps have their own quantization parameters with one set "
        "per recurring value, kept when every output stays within this many quantization "
        "steps of the model's in LiteRT and TFLM (0: only steps that share them, equal outputs)",
    )

    check_inputs = Option(
        "",
        "an .npz of model inputs (as `verify --inputs`) that the requantize check runs on "
        "instead of seeded random inputs (`optimize --inputs` sets it)",
    )

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
        now = steps.ops[0].inputs[1 if steps.ops[0].type == "SPLIT" else 0]
        if now is not steps.source and now.is_quantized:  # a chain re-rolled before wrote it:
            steps = dataclasses.replace(steps, source=now)  # int8 checks run once per pass
        if steps.source.is_dynamic:
            return "the sequence has a dynamic shape (batch None: freeze-shapes first, --batch)"
        chain = find_unrolled(sg, steps, backwards, exact=not self.requantize)
        if isinstance(chain, str):
            if steps.source.is_quantized and not self.requantize:
                chain += "; --requantize STEPS re-rolls it within a bound"
            return chain
        int8 = any(t.is_quantized for t in (chain.x, *chain.states))
        if not int8 and any(t.type_name != "FLOAT32" for t in (chain.x, *chain.states)):
            return "neither float32 nor quantized"
        rq = requantize(chain) if int8 else None
        if isinstance(rq, str):
            return rq
        if int8 and model not in _ORIGINALS:
            _ORIGINALS[model] = load(to_bytes(model))
        before, subgraphs = set(sg.iter_ops()), len(model.subgraphs)
        loop, moved = build_loop(chain, _layer(chain), rq)
        olds = list(moved)
        if int8:
            why = self._measure(model, sg, olds, moved)
        else:
            why = _prove(sg, steps.source, olds, moved)
        if isinstance(why, str):  # nothing reads the loop now: remove what build_loop added
            for op in reversed([op for op in sg.iter_ops() if op not in before]):
                sg.remove_op(op)
            del model.subgraphs[subgraphs:]
            return f"the loop is not the chain: {why}"
        if not int8:
            for old in olds:
                replace_result(sg, old, moved[old])
        remove_dead_code(model)  # the chain's ops, and its UNPACK once no chain reads it
        self.stats["chains_rerolled"] += 1
        line = f"{chain.steps} steps of {len(chain.body_ops)} ops -> one WHILE loop"
        if int8:
            worst = max(why.values())
            self.stats["requantized_error"] = max(worst, self.stats.get("requantized_error", 0))
            errors = ", ".join(f"{rt} {e}" for rt, e in why.items())
            line += (
                f" (int8; outputs within {worst} quantization step(s) of the unrolled "
                f"model's, {100 * worst / 255:.2f}% of an int8 output's range: {errors}; "
                f"bound {self.requantize:g})"
            )
        self.stats["layers"].append(line)
        return None

    def _measure(self, model: Model, sg: Subgraph, olds: list, moved: dict) -> dict | str:
        """Let the chain's readers read the loop and run the model in LiteRT and TFLM
        against the model as the pass got it (reroll_requant.measure): {runtime: largest
        output difference in quantization steps} when within the bound, else the readers
        read the chain again and the reason is returned."""
        if len({id(moved[t]) for t in olds}) != len(olds):
            return "two values the chain hands on are one loop result"
        for old in olds:
            replace_result(sg, old, moved[old])
        errors = measure(_ORIGINALS[model], to_bytes(model), inputs=self.check_inputs or None)
        bound = self.requantize
        if isinstance(errors, dict) and max(errors.values()) <= bound:
            return errors
        for old in olds:
            replace_result(sg, moved[old], old)
        if isinstance(errors, str):
            return errors
        got = ", ".join(f"{rt} {e}" for rt, e in errors.items())
        return f"outputs differ by up to {got} quantization steps (bound {bound:g})"


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
