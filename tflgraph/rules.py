"""Rewrite rules: a pattern plus a rewrite function, run as a pass.

    @tflgraph.rule("fold-mul-into-fc", FC_THEN_MUL)
    def fold_mul_into_fc(m):              # m: Match (captures + rewrite helpers)
        ...
        if not exact:
            return "scale is not per output channel"   # declined; shown by --explain
        y = m.new_op("FULLY_CONNECTED", [m["x"], m.constant(w2), m.constant(b2)], like=m.out)
        m.replace(m.out, y)                            # m.out: the root op's output

A rule pass visits every subgraph (WHILE bodies too), tries the pattern on each op of its root
types in execution order, and calls the rewrite on each match. The rewrite builds new ops next
to the old ones and redirects the old output with `m.replace`; the pipeline then deletes what
became dead, so rules never remove ops themselves. Returning a string declines the match with
that reason (it must come before any `m.replace`); a rewrite that edits `m.sg` directly
instead of through the helpers returns True to say so. Candidates that did not match are
explained with the pattern's first failed constraint under `tflgraph optimize --explain`.

Several rules can share one pass as rows of a table: subclass RulePass and set
`rules = [(PATTERN_A, rewrite_a), (PATTERN_B, rewrite_b)]`.

Numerical proof: before `m.replace(old, new)`, `why = m.prove(old, new)` evaluates both tensors
with the reference interpreter (tflgraph/reference/interpreter.py) on seeded random values of the
region's inputs and returns None when they agree, else the reason to decline with. The new ops
that a declined rule made are dead and removed by the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tflgraph.io.schema import Options
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pattern import Op
from tflgraph.pipeline import Pass, PassError, register
from tflgraph.reference.equivalence import RTOL, check_equal

Rewrite = Callable[["Match"], object]


class Match(dict):
    """The captures of one match (a dict) plus helpers that keep the graph valid."""

    def __init__(self, sg: Subgraph, op: Operator, captures: dict):
        super().__init__(captures)
        self.sg, self.op = sg, op
        self.changed = False
        self.new_ops: list[Operator] = []

    @property
    def model(self) -> Model | None:
        return self.sg.model

    @property
    def out(self) -> Tensor:
        """The root op's first output."""
        return self.op.outputs[0]

    def constant(self, array, like: Tensor | None = None, name: str | None = None) -> Tensor:
        """A new constant with its own buffer (shared buffers are never edited). With `like`,
        the array is cast to that tensor's dtype and named after it."""
        arr = np.asarray(array)
        if like is not None and like.dtype is not None:
            arr = arr.astype(like.dtype, copy=False)
        return self.sg.new_constant(arr, name=name or (like.name if like else "const"))

    def new_op(self, op_type: str, inputs: list, like, options=None, name: str | None = None):
        """Add an op whose outputs have the shape, dtype and quantization of `like` (a tensor
        or a list of tensors); return its output (or the list of outputs). `options` may be
        an Options (copied, never shared) or a dict of fields for the op's default table."""
        likes = like if isinstance(like, (list, tuple)) else [like]
        outs = [self._tensor_like(t, name) for t in likes]
        if isinstance(options, Options):
            options = Options(options.kind, options)
        self.new_ops.append(self.sg.add_op(op_type, inputs, outs, options=options))
        return outs if isinstance(like, (list, tuple)) else outs[0]

    def _tensor_like(self, t: Tensor, name: str | None) -> Tensor:
        return self.sg.new_tensor(
            name or t.name + "_rw",
            t.shape,
            t.dtype if t.dtype is not None else "float32",
            shape_signature=t.shape_signature,
            quantization=t.quantization,
        )

    def set_input(self, op: Operator, index: int, t: Tensor | None) -> None:
        """Point one operand of `op` at `t`."""
        self.sg.set_input(op, index, t)
        self.changed = True

    def replace(self, old: Tensor, new: Tensor) -> None:
        """Every reader of `old` reads `new`: ops, subgraph outputs and signature defs. A
        subgraph output keeps its name (the new tensor takes it), so callers see no change."""
        self.sg.replace_all_uses(old, new, keep_name=True)
        self.changed = True

    def prove(self, old: Tensor, new: Tensor, trials: int = 3, atol: float = RTOL) -> str | None:
        """None if `old` and `new` agree on the reference interpreter, else why not.

        The region is the matched ops plus the ops made by `new_op`; its other non-constant
        inputs get seeded random values (float in [-1, 1), bool), `trials` times, and the two
        tensors are compared by tflgraph.reference.equivalence (|a - b| <= atol * max(1,
        max |a|)). Integer inputs, ops the interpreter lacks and quantized tensors make the
        check fail (a rule then declines)."""
        region = {self.op, *self.new_ops, *(v for v in self.values() if isinstance(v, Operator))}
        return check_equal(self.sg, old, new, trials, region=region, rtol=atol)


class RulePass(Pass):
    """A pass made of rows (pattern, rewrite); see the module docstring."""

    rules: list[tuple[Op, Rewrite]] = []

    def run(self, model: Model) -> bool:
        changed = False
        matched = rewritten = 0
        for sg in model.subgraphs:
            for pattern, rewrite in self.rules:
                for op in pattern.candidates(sg):
                    if op not in sg.graph or not any(
                        t is not None and sg.is_used(t) for t in op.outputs
                    ):
                        continue  # replaced by an earlier match in this sweep
                    caps: dict = {}
                    why = pattern.bind_op(sg, op, caps)
                    where = f"{sg.name or 'subgraph'}: {op.type} -> {_out_name(op)}"
                    if why:
                        self.explain(f"{where}: no match: {why}")
                        continue
                    matched += 1
                    m = Match(sg, op, caps)
                    result = rewrite(m)
                    if isinstance(result, str):
                        if m.changed:
                            raise PassError(
                                f"rule {self.name!r} declined after changing the graph "
                                f"({result}); decline before calling m.replace"
                            )
                        self.explain(f"{where}: declined: {result}")
                    elif m.changed or result is True:
                        rewritten += 1
                        changed = True
        self.stats = {"matched": matched, "rewritten": rewritten}
        return changed


def _out_name(op: Operator) -> str:
    t = op.outputs[0] if op.outputs else None
    return repr(t.name) if t is not None else "(no output)"


def rule(name: str, pattern: Op, summary: str | None = None, override: bool = False):
    """Decorator: register `fn(m: Match)` as the pass `name` rewriting `pattern`'s matches."""

    def wrap(fn: Rewrite) -> Rewrite:
        doc = (fn.__doc__ or "").strip().splitlines()
        cls = type(
            f"Rule_{fn.__name__}",
            (RulePass,),
            {
                "rules": [(pattern, fn)],
                "summary": summary or (doc[0] if doc else f"rewrite {pattern!r}"),
                "__doc__": fn.__doc__,
                "__module__": fn.__module__,
            },
        )
        register(name, override=override)(cls)
        fn.pass_class = cls
        return fn

    return wrap
