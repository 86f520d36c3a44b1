"""Rewrite rules: a pattern plus a rewrite function, run as a pass.

    @tflgraph.rule("fold-mul-into-fc", FC_THEN_MUL)
    def fold_mul_into_fc(m):              # m: Match (captures + rewrite helpers)
        ...
        if not exact:
            return "scale is not per output channel"   # declined; shown by --explain
        return m.new_op("FULLY_CONNECTED", [m["x"], m.constant(w2), m.constant(b2)])

A rule pass visits every subgraph (WHILE bodies too), tries the pattern on each op of its root
types in execution order, and calls the rewrite on each match. The rewrite builds new ops next
to the old ones (`m.new_op`, `m.constant`) and returns what replaces what:

- a Tensor: it replaces the root op's output `m.out`;
- a dict {old: new}: each `new` replaces its `old`;
- a string: the match is declined with that reason (shown by `tflgraph optimize --explain`);
- None: nothing to do (or the rewrite already called `m.replace` itself); True: the rewrite
  edited `m.sg` directly instead of through the helpers.

Before a returned replacement is committed, the framework checks it (`Match.check`): the old
and new tensors are evaluated with the reference interpreter on seeded random values of the
region's inputs (tflgraph/reference/equivalence.py), the region being the root op, EVERY op
the pattern matched (named or not) and the ops made by `m.new_op`. A mismatch refuses the
rewrite with the reason in --explain. `@rule(..., prove=False)` skips the check, for rewrites
whose docstring argues exactness where random samples cannot (integer inputs, ops the
interpreter lacks). The uses are then replaced; the pipeline deletes what became dead, so
rules never remove ops themselves (the new ops of a declined or refused match are dead too).
Candidates that did not match are explained with the pattern's first failed constraint.

Several rules can share one pass as rows of a table: subclass RulePass and set
`rules = [(PATTERN_A, rewrite_a), (PATTERN_B, rewrite_b)]`.

Older rules check and commit by hand: `why = m.prove(old, new)` then `m.replace(old, new)`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.schema import Options
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pattern import MATCHED, Op
from tflgraph.pipeline import Pass, PassError, register
from tflgraph.reference.equivalence import RTOL, check_equal, probe_feed, random_feed
from tflgraph.reference.interpreter import evaluate_tensors, value_ranges

Rewrite = Callable[["Match"], object]
TRIALS = 4  # samples a returned replacement is checked on (see equivalence.probe_feed)
# ops whose output dtype is an option (the reference kernels read it from the output tensor)
_OUTPUT_TYPE = {"CAST": "out_data_type", "ARG_MAX": "output_type", "ARG_MIN": "output_type",
                "SHAPE": "out_type"}  # fmt: skip


class CaptureError(TflgraphError, KeyError):
    """A rewrite asked for a capture its pattern does not name."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class Match(dict):
    """The captures of one match (a dict) plus helpers that keep the graph valid."""

    def __init__(self, sg: Subgraph, op: Operator, captures: dict, matched=()):
        super().__init__(captures)
        self.sg, self.op = sg, op
        # every op the pattern matched, named or not: innermost first, the root last
        self.matched: tuple[Operator, ...] = tuple(matched) or (op,)
        self.changed = False
        self.new_ops: list[Operator] = []
        self.observed: dict[Tensor, tuple[float, float]] = {}  # value ranges the model produced

    def __missing__(self, key):
        names = ", ".join(repr(k) for k in self if isinstance(k, str)) or "none"
        raise CaptureError(f"no capture {key!r} in this match (captures: {names})")

    @property
    def model(self) -> Model | None:
        return self.sg.model

    @property
    def out(self) -> Tensor:
        """The root op's first output."""
        return self.op.outputs[0]

    @property
    def region(self) -> set[Operator]:
        """The ops a check evaluates: every op the pattern matched and every op made by
        `new_op`; the tensors they read from outside get random values."""
        return {self.op, *self.matched, *self.new_ops}

    def constant(self, array, like: Tensor | None = None, name: str | None = None) -> Tensor:
        """A new constant with its own buffer (shared buffers are never edited). With `like`,
        the array is cast to that tensor's dtype and named after it."""
        arr = np.asarray(array)
        if like is not None and like.dtype is not None:
            arr = arr.astype(like.dtype, copy=False)
        return self.sg.new_constant(arr, name=name or (like.name if like else "const"))

    def new_op(self, op_type: str, inputs: list, like=None, options=None, name: str | None = None):
        """Add an op and return its output (or the list of outputs).

        With `like` (a tensor or a list of tensors), the outputs take their shape, dtype and
        quantization. Without it, the op has one output whose shape and dtype the reference
        interpreter infers by running the op once on its inputs (constants as they are,
        other inputs zero); that needs static float or integer inputs, else pass `like`.
        `options` may be an Options (copied, never shared) or a dict of fields for the op's
        default table."""
        if isinstance(options, Options):
            options = Options(options.kind, options)
        if like is None:
            outs = [self._inferred_output(op_type, inputs, options, name)]
        else:
            likes = like if isinstance(like, (list, tuple)) else [like]
            outs = [self._tensor_like(t, name) for t in likes]
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

    def _inferred_output(self, op_type: str, inputs: list, options, name) -> Tensor:
        """A new tensor of the shape and dtype that `op_type` computes from `inputs`."""
        where = f"m.new_op({op_type!r}) without like="
        feeds = {}
        for t in inputs:
            if t is None or t.is_constant:
                continue
            if t.is_dynamic or t.dtype is None:
                raise PassError(
                    f"{where}: cannot infer the output of {t.type_name} input {t.name!r}"
                    f"{' (dynamic shape)' if t.is_dynamic else ''}; pass like=<a tensor>"
                )
            feeds[t] = np.zeros(t.shape, t.dtype)
        scratch = Subgraph("new_op shape inference")
        probe = scratch.add_tensor(Tensor("probe"))
        field = _OUTPUT_TYPE.get(op_type)  # these kernels read the output tensor's dtype
        if field is not None:
            if not options or options.get(field) is None:
                raise PassError(f"{where}: give options {{{field!r}: ...}} or like=")
            probe.type = options[field]
        try:
            scratch.add_op(op_type, inputs, [probe], options=options)
            with np.errstate(all="ignore"):
                (value,) = evaluate_tensors(scratch, feeds, [probe])
        except (TflgraphError, ValueError) as e:
            raise PassError(f"{where}: cannot infer the output ({e}); pass like=") from None
        value = np.asarray(value)
        return self.sg.new_tensor(name or f"{op_type.lower()}_rw", value.shape, value.dtype)

    def set_input(self, op: Operator, index: int, t: Tensor | None) -> None:
        """Point one operand of `op` at `t`."""
        self.sg.set_input(op, index, t)
        self.changed = True

    def replace(self, old: Tensor, new: Tensor) -> None:
        """Every reader of `old` reads `new`: ops, subgraph outputs and signature defs. A
        subgraph output keeps its name (the new tensor takes it), so callers see no change."""
        self.sg.replace_all_uses(old, new, keep_name=True)
        self.changed = True

    def check(self, old, new, trials: int = TRIALS, rtol: float = RTOL) -> str | None:
        """None if `new` equals `old` (tensors, or equal-length lists of them) on the reference
        interpreter, else why not: tflgraph.reference.equivalence.check_equal over `region`,
        `trials` seeded samples of the region's inputs drawn where rewrites break
        (equivalence.probe_feed: [-1, 1), magnitudes 1e-3 to 1e3 with both signs and the
        activation clamp points, the range the model produced), the bound
        |a - b| <= rtol * max(1, max |a|). Ops the interpreter lacks and quantized tensors
        cannot be checked (the reason says so)."""
        olds = list(old) if isinstance(old, (list, tuple)) else [old]
        news = list(new) if isinstance(new, (list, tuple)) else [new]
        for a, b in zip(olds, news):
            if a.dtype != b.dtype:
                return f"not equal: {a.name!r}: dtype {a.type_name} became {b.type_name}"
        sampler = partial(probe_feed, observed=self.observed)
        return check_equal(
            self.sg, olds, news, trials, region=self.region, sampler=sampler, rtol=rtol
        )

    def prove(self, old: Tensor, new: Tensor, trials: int = TRIALS, atol: float = RTOL):
        """`check` under its older name (rules that commit with `m.replace` call it)."""
        return self.check(old, new, trials, rtol=atol)


class RulePass(Pass):
    """A pass made of rows (pattern, rewrite); see the module docstring."""

    rules: list[tuple[Op, Rewrite]] = []
    prove: bool = True  # check returned replacements on the reference interpreter

    def run(self, model: Model) -> bool:
        changed = False
        matched = rewritten = 0
        observed = _LazyRanges(model)
        for sg in model.subgraphs:
            for pattern, rewrite in self.rules:
                for op in pattern.candidates(sg):
                    if op not in sg.graph or not any(
                        t is not None and sg.is_used(t) for t in op.outputs
                    ):
                        continue  # replaced by an earlier match in this sweep
                    caps: dict = {}
                    why = self._call(pattern, "its pattern", pattern.bind_op, sg, op, caps)
                    where = f"{sg.name or 'subgraph'}: {op.type} -> {_out_name(op)}"
                    if why:
                        self.explain(f"{where}: no match: {why}")
                        continue
                    matched += 1
                    m = Match(sg, op, caps, caps.pop(MATCHED, ()))
                    m.observed = observed
                    if self._apply(m, self._call(rewrite, "", rewrite, m), where):
                        self.explain(f"{where}: rewritten")
                        rewritten += 1
                        changed = True
        for pattern, _ in self.rules:
            if not any(op.type in pattern.types for sg in model.subgraphs for op in sg.iter_ops()):
                types = "|".join(sorted(pattern.types))
                self.explain(f"no {types} op in the model: the pattern's root never matches")
        self.stats = {"matched": matched, "rewritten": rewritten}
        return changed

    def _call(self, owner, what: str, fn, *args):
        """fn(*args), with an exception in the user's code (the rewrite, a where= predicate, a
        wrong capture name) turned into a PassError naming the rule and the file and line."""
        try:
            return fn(*args)
        except Exception as e:
            at = _user_frame(e.__traceback__) or _defined_at(owner)
            raised = "" if isinstance(e, TflgraphError) else f"raised {type(e).__name__} "
            what = f"{what} " if what else ""
            raise PassError(f"rule {self.name!r}: {what}{raised}at {at}: {e}") from None

    def _apply(self, m: Match, result, where: str) -> bool:
        """Commit what the rewrite returned (see the module docstring); True if it changed."""
        if isinstance(result, str):
            if m.changed:
                raise PassError(
                    f"rule {self.name!r} declined after changing the graph ({result}); "
                    "decline before calling m.replace"
                )
            self.explain(f"{where}: declined: {result}")
            return False
        if isinstance(result, Tensor):
            result = {m.out: result}
        if isinstance(result, dict):
            if m.changed:
                raise PassError(
                    f"rule {self.name!r} both called m.replace and returned a replacement; "
                    "do one of the two"
                )
            pairs = [(old, new) for old, new in result.items() if old is not new]
            if not pairs:
                return False
            if self.prove and (why := m.check([o for o, _ in pairs], [n for _, n in pairs])):
                self.explain(f"{where}: refused: {why}")
                return False
            for old, new in pairs:
                m.replace(old, new)
        return m.changed or result is True


_PACKAGE = Path(__file__).resolve().parent


def _user_frame(tb) -> str | None:
    """'file:line' of the innermost traceback frame outside tflgraph and numpy."""
    for frame in reversed(traceback.extract_tb(tb)):
        path = Path(frame.filename)
        if _PACKAGE not in path.parents and "numpy" not in path.parts:
            return f"{path.name}:{frame.lineno}"
    return None


def _defined_at(obj) -> str:
    code = getattr(obj, "__code__", None)
    if code is None:
        return type(obj).__name__
    return f"{Path(code.co_filename).name}:{code.co_firstlineno}"


class _LazyRanges(dict):
    """The value ranges of the model's main subgraph (interpreter.value_ranges on seeded
    random inputs), computed on the first look-up; empty when the interpreter cannot run it."""

    def __init__(self, model: Model):
        super().__init__()
        self.model, self.done = model, False

    def _fill(self):
        if self.done:
            return
        self.done = True
        main = self.model.subgraphs[0] if self.model.subgraphs else None
        if main is None:
            return
        rng = np.random.default_rng(0)
        inputs = [random_feed(t, rng) for t in main.inputs]
        if any(x is None for x in inputs):
            return
        try:
            self.update(value_ranges(main, inputs))
        except (TflgraphError, ValueError, ArithmeticError):
            pass  # ops the interpreter lacks: the check samples without observed ranges

    def get(self, key, default=None):
        self._fill()
        return super().get(key, default)

    def __contains__(self, key):
        self._fill()
        return super().__contains__(key)


def _out_name(op: Operator) -> str:
    t = op.outputs[0] if op.outputs else None
    return repr(t.name) if t is not None else "(no output)"


def rule(
    name: str,
    pattern: Op,
    summary: str | None = None,
    prove: bool = True,
    override: bool = False,
):
    """Decorator: register `fn(m: Match)` as the pass `name` rewriting `pattern`'s matches.
    prove=False commits what the rewrite returns without checking it (see the module
    docstring): for rewrites whose docstring argues why they are exact. override=True replaces a
    pass of the same name (a built-in included)."""

    def wrap(fn: Rewrite) -> Rewrite:
        doc = (fn.__doc__ or "").strip().splitlines()
        cls = type(
            f"Rule_{fn.__name__}",
            (RulePass,),
            {
                "rules": [(pattern, fn)],
                "prove": prove,
                "summary": summary or (doc[0] if doc else f"rewrite {pattern!r}"),
                "__doc__": fn.__doc__,
                "__module__": fn.__module__,
            },
        )
        register(name, override=override)(cls)
        fn.pass_class = cls
        return fn

    return wrap
