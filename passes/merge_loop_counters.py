"""Merge loop counters that always hold the same value (Keras 3 carries two).

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops.analyze_loop) with a second int32 counter c
           next to the time counter t: both start at the same constant and step by ADD 1.
Rewrite:   every reader of c (in cond, in the body, of the next value, of the loop result)
           reads t instead; c is then dead and drop-dead-loop-values stops carrying it.
Proof:     by induction over the iterations, c == t at the start of every step (equal
           initial constants, both + 1 per step), hence also after the loop.
Invariant: model outputs are bit-identical.
"""

from __future__ import annotations

from tflgraph.ir import Model
from tflgraph.pipeline import Pass, register
from tflgraph.rnn import loops


@register("merge-loop-counters")
class MergeLoopCounters(Pass):
    """Make every reader of a duplicate loop counter read the time counter."""

    def run(self, model: Model) -> bool:
        merged = 0
        for loop in loops.rnn_loops(model, self.explain):
            if len(loop.counters) > 1:
                merged += self._merge(loop)
        self.stats = {"counters_merged": merged}
        return bool(merged)

    def _merge(self, loop: loops.RnnLoop) -> int:
        t, cond, body = loop.time, loop.cond, loop.body
        start = loops.scalar_value(t.init)
        merged = 0
        for c in loop.counters:
            if c is t:
                continue
            if loops.scalar_value(c.init) != start:
                self.explain(f"{loop.name}: counter {c.index} starts elsewhere than time")
                continue
            step = body.producer(c.next)
            if not (cond.is_used(cond.inputs[c.index]) or set(body.consumers(c.arg)) != {step}
                    or body.consumers(c.next) or loop.sg.is_used(c.result)):  # fmt: skip
                continue  # only its own step reads c: already merged
            cond.replace_all_uses(cond.inputs[c.index], cond.inputs[t.index])
            _redirect(body, c.arg, t.arg, keep=step)
            _redirect(body, c.next, t.next)
            loops.replace_result(loop.sg, c.result, t.result)
            merged += 1
        return merged


def _redirect(sg, old, new, keep=None) -> None:
    """Every op reading `old`, except `keep`, reads `new` instead (subgraph outputs stay)."""
    for reader in sg.consumers(old):
        if reader is keep:
            continue
        for i, x in enumerate(reader.inputs):
            if x is old:
                sg.set_input(reader, i, new)
