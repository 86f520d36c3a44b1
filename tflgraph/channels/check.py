"""Check one channel-removal round on the region it changes (for strip-dead-channels).

The region is every op the round touches in a top-level subgraph: the layers it slices, the
writers and readers of every tensor it shrinks, the ops it edits, and for a change inside a
loop body the WHILE op that runs it. The region's ops the reference interpreter can evaluate
are run before and after the round on the same seeded random values of their inputs, three
invokes in a row with variable tensors carried, so an LSTM and its neighbours are checked even
when a TopK head, a hybrid layer or a Flex op beyond them is not. Every tensor they hand on (to
an op outside, or as a subgraph output) must be equal (tflgraph/reference/equivalence.py
`compare`): on its kept channels when the round shrinks it, and its removed channels must hold
the constants the analysis claimed, which the consumer that cannot be evaluated folds or
drops. A shrunk region input gets those constants on its removed channels too. If no op of the
region can be evaluated, the round cannot be checked and is not applied.
"""

from __future__ import annotations

import numpy as np

from tflgraph.channels.graph import ChannelGraph, Removal
from tflgraph.errors import TflgraphError
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.reference.equivalence import can_evaluate, compare, random_feed, region_inputs
from tflgraph.reference.interpreter import evaluate_tensors

INVOKES = 3


class RoundCheck:
    """Evaluate a round's region now, before the round; `after()` compares once it is done.
    `why` says why the region cannot be checked (then the round must not be applied)."""

    def __init__(self, model: Model, graph: ChannelGraph, plan: Removal, seed: int = 0):
        self.graph, self.plan, self.seed = graph, plan, seed
        self.parts: list[tuple[Subgraph, list[Tensor], list[Tensor]]] = []
        self.why: str | None = None
        for sg, ops in _region(model, plan).items():
            ev = _evaluable_closure(sg, ops)
            while ev:
                part = (sg, _feedable(sg, ev), _handed_on(sg, ev))
                failing = self._failing_op(part, ev)
                if failing is None:
                    self.parts.append(part)
                    break
                ev.remove(failing)  # a kernel refused its options: check around it
        if not self.parts:
            self.why = "cannot check: the interpreter can evaluate no op the round changes"
            return
        self.before = self._run(old=True)
        if isinstance(self.before, str):
            self.why = self.before

    def after(self) -> str | None:
        """None if the round (done since, when `why` was None) kept the region's results,
        else why not."""
        got = self._run(old=False)
        if isinstance(got, str):
            return got
        for (_, _, outputs), want_rows, got_rows in zip(self.parts, self.before, got):
            for want, have in zip(want_rows, got_rows):
                for t, a, b in zip(outputs, want, have):
                    why = self._compare(t, a, b)
                    if why:
                        return f"not equal: {why}"
        return None

    def _compare(self, t: Tensor, a: np.ndarray, b: np.ndarray) -> str | None:
        keep = self.plan.mask(t)
        if keep is None:
            return compare(a, b, what=repr(t.name))
        claimed = self.graph.value(t)
        gone = ~keep & np.isfinite(claimed)
        return compare(a[..., keep], b, what=repr(t.name)) or compare(
            np.broadcast_to(claimed[gone], a[..., gone].shape),
            a[..., gone],
            what=f"{t.name!r} (removed channels)",
        )

    def _failing_op(self, part, ev: list[Operator]) -> Operator | None:
        """The first op of `ev` (in execution order) the interpreter fails on, such as a
        fused activation its kernel does not implement; None if the part evaluates."""
        sg, inputs, outputs = part
        rng, feeds = np.random.default_rng(self.seed), {}
        for t in inputs:
            feeds[t] = self._feed(t, rng, True)
            if feeds[t] is None:
                return None  # _run says why
        if _evaluates(sg, feeds, outputs):
            return None
        return next((op for op in ev if not _evaluates(sg, feeds, op.outputs)), None)

    def _run(self, old: bool) -> list | str:
        rows = []
        for sg, inputs, outputs in self.parts:
            rng, state, part = np.random.default_rng(self.seed), {}, []
            for _ in range(INVOKES):
                feeds = {}
                for t in inputs:
                    x = self._feed(t, rng, old)
                    if x is None:
                        return f"cannot check: no random values for {t.type_name} {t.name!r}"
                    feeds[t] = x
                try:
                    part.append(evaluate_tensors(sg, feeds, outputs, state))
                except (TflgraphError, ValueError, TypeError, IndexError) as e:
                    return f"cannot check: {e}"
            rows.append(part)
        return rows

    def _feed(self, t: Tensor, rng: np.random.Generator, old: bool) -> np.ndarray | None:
        keep = self.plan.mask(t)
        shape = t.shape
        if keep is not None and not old:  # shrunk by now: draw the old shape, slice it
            shape = (*t.shape[:-1], keep.size)
        x = random_feed(_Shaped(t, shape), rng)
        if x is None or keep is None:
            return x
        claimed = self.graph.value(t)
        gone = ~keep & np.isfinite(claimed)
        x[..., gone] = claimed[gone]  # what the analysis says the removed channels hold
        return x if old else x[..., keep]


class _Shaped:
    """A tensor's dtype with another shape (random_feed reads .dtype and .shape)."""

    def __init__(self, t: Tensor, shape):
        self.dtype, self.shape = t.dtype, shape


def _region(model: Model, plan: Removal) -> dict[Subgraph, set[Operator]]:
    """The ops the round touches, per subgraph, inner-loop changes lifted to their WHILE."""
    owner = {
        sub: (sg, op) for sg in model.subgraphs for op in sg.iter_ops() for sub in op.subgraphs()
    }
    touched: dict[Subgraph, set[Operator]] = {}
    for sg in model.subgraphs:
        ops = touched.setdefault(sg, set())
        for t in sg.tensors:
            if t in plan.keep:
                ops.update(sg.consumers(t))
                if sg.producer(t) is not None:
                    ops.add(sg.producer(t))
    for layer in plan.layers:
        if plan.mask(layer.y) is not None or plan.mask(layer.x) is not None or layer in plan.folds:
            touched[layer.sg].add(layer.op)
    for sg, op, _ in plan.edits:
        if plan.mask(op.outputs[0]) is not None:
            touched[sg].add(op)
    for sg, op, i in plan.constants:  # a loop's sliced initial value
        if plan.mask(op.inputs[i]) is not None:
            touched[sg].add(op)
    for sg in list(touched):
        inner, seen = sg, set()
        while inner in owner and touched.get(inner) and inner not in seen:
            seen.add(inner)
            parent, loop = owner[inner]
            touched.setdefault(parent, set()).add(loop)
            inner = parent
    return {sg: ops for sg, ops in touched.items() if ops and sg not in owner}


def _evaluable_closure(sg: Subgraph, ops: set[Operator]) -> list[Operator]:
    """The evaluable ops of `ops`, plus the evaluable producers of the non-float values they
    read (shape and index computations cannot be fed random values), in execution order."""
    ev = {op for op in ops if can_evaluate(op)}
    grew = True
    while grew:
        grew = False
        for t in region_inputs(sg, ev):
            p = sg.producer(t)
            if not t.is_variable and _needs_producer(t) and p is not None and can_evaluate(p):
                ev.add(p)
                grew = True
    return [op for op in sg.operators if op in ev]


def _needs_producer(t: Tensor) -> bool:
    return t.dtype is None or t.dtype.kind not in "fb"


def _evaluates(sg: Subgraph, feeds: dict, tensors: list) -> bool:
    try:
        evaluate_tensors(sg, feeds, [t for t in tensors if t is not None], {})
    except (TflgraphError, ValueError, TypeError, IndexError):
        return False
    return True


def _handed_on(sg: Subgraph, ev: list[Operator]) -> list[Tensor]:
    """The tensors the region's ops hand to an op outside it or to the subgraph's outputs."""
    return [
        t
        for op in ev
        for t in op.outputs
        if t is not None and (any(c not in ev for c in sg.consumers(t)) or t in sg.outputs)
    ]


def _feedable(sg: Subgraph, ev: list[Operator]) -> list[Tensor]:
    """The region's inputs to feed (variable tensors come from the interpreter's state)."""
    return [t for t in region_inputs(sg, ev) if not t.is_variable]
