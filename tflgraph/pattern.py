"""The pattern language passes match with: a pattern reads like the subgraph it matches.

    from tflgraph.pattern import Any, Const, Op

    FC_THEN_MUL = Op("MUL",
                     Op("FULLY_CONNECTED", Any("x"), Const("w"), Const("b"),
                        name="fc", activation="NONE", single_use=True),
                     Const("scale"),
                     activation="NONE")

    captures = FC_THEN_MUL.match(sg, op)   # {"x": Tensor, "w": ..., "fc": Operator} or None
    FC_THEN_MUL.why_not(sg, op)            # None, or e.g. "MUL operand 0 <- FULLY_CONNECTED:
                                           #   fused activation is RELU, want NONE"

Patterns:
  Op(types, *operands, name=, activation=, options=, where=, single_use=, commutative=, out=)
      an operator of one type ("ADD") or several (("ADD", "SUB")); operand patterns in order.
      Nested in another pattern it matches the tensor's producer. `name` captures the Operator.
      `activation` is a fused-activation name or a set of names, `options` maps option fields
      to values (enum fields take names: padding="SAME") or predicates, `where(op) -> bool` is
      any other check, `single_use` asks that the output be read by one op and not be a
      subgraph output, `out` the output index that the enclosing pattern reads (None: any).
      Op types (builtin names, or "CUSTOM:code"), activation names and option fields are
      checked when the pattern is built: a typo raises PatternError with the closest name.
      Two-operand ADD, MUL, MAXIMUM, MINIMUM, ... try both operand orders (commutative=False
      turns that off).
  Any(name)            any present tensor (captured under `name` if given)
  Const(name, where=)  a constant tensor; `where(array) -> bool` checks its value
  None                 an absent optional operand (TFLite's -1)
  Rest(name, each=)    as the last operand: the remaining operands (a list), each matching `each`

A name used twice must bind the same object both times (`Op("MUL", Any("x"), Any("x"))` is a
square). Matching never raises for a mismatch (every `bind` returns None or the reason):
`match` returns None and `why_not` says which constraint failed first, which
`optimize --explain` prints for every candidate a rule pass leaves alone.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np

from tflgraph.errors import TflgraphError, did_you_mean
from tflgraph.io.schema import (
    ACTIVATION_NAMES,
    OP_CODES,
    OptionsError,
    enum_codes,
    option_value,
    options_kind,
    spec,
)
from tflgraph.ir import Operator, Subgraph, Tensor

# names other frameworks use for a TFLite op, so that the error can point at it
_OTHER_NAMES = {"SIGMOID": "LOGISTIC", "DENSE": "FULLY_CONNECTED", "MATMUL": "BATCH_MATMUL"}
COMMUTATIVE = {
    "ADD", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE",
    "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
}  # fmt: skip


class PatternError(TflgraphError, ValueError):
    """A pattern that could never match as written: an unknown op type, option or name."""


MATCHED = "\0matched ops"  # the captures' private key for the ops an Op pattern matched


def _bind(caps: dict, name: str | None, value) -> str | None:
    if name is None:
        return None
    if name in caps and caps[name] is not value:
        return f"{name!r} is already bound to {_show(caps[name])}, not {_show(value)}"
    caps[name] = value
    return None


def _show(x) -> str:
    if isinstance(x, Tensor):
        return f"tensor {x.name!r}"
    if isinstance(x, Operator):
        return x.type
    return repr(x)


class Pattern(ABC):
    """Base of every pattern. `bind(sg, t, caps)` matches the tensor `t` (an operand), adds
    to `caps`, and returns None on success or the reason it failed (never raises for that)."""

    name: str | None = None

    @abstractmethod
    def bind(self, sg: Subgraph, t: Tensor | None, caps: dict) -> str | None: ...


class Any(Pattern):
    """Any present tensor."""

    def __init__(self, name: str | None = None):
        self.name = name

    def bind(self, sg, t, caps):
        if t is None:
            return "operand is absent"
        return _bind(caps, self.name, t)

    def __repr__(self):
        return f"Any({self.name!r})" if self.name else "Any()"


class Const(Pattern):
    """A constant tensor, optionally with a predicate on its value."""

    def __init__(self, name: str | None = None, where: Callable | None = None):
        self.name, self.where = name, where

    def bind(self, sg, t, caps):
        if t is None:
            return "operand is absent"
        if not t.is_constant or t.data is None:
            return f"{_show(t)} is not a constant"
        if self.where is not None and not self.where(t.data):
            return f"constant {t.name!r} = {_brief(t.data)} fails {_fn_name(self.where)}"
        return _bind(caps, self.name, t)

    def __repr__(self):
        return f"Const({self.name!r})" if self.name else "Const()"


class Rest(Pattern):
    """The remaining operands (variadic ops such as CONCATENATION, PACK, ADD_N)."""

    def __init__(self, name: str | None = None, each: Pattern | None = None, min: int = 0):
        self.name, self.each, self.min = name, each, min

    def bind(self, sg: Subgraph, t: Tensor | None, caps: dict) -> str | None:
        """Rest stands for a list of operands, so it never matches a single tensor."""
        return "Rest() matches only as the last operand pattern of an Op"

    def bind_many(self, sg, ts: list, caps: dict) -> str | None:
        if len(ts) < self.min:
            return f"{len(ts)} remaining operands, want at least {self.min}"
        if self.each is not None:
            for i, t in enumerate(ts):
                if why := _at(f"variadic operand {i}", self.each, sg, t, caps):
                    return why
        return _bind(caps, self.name, list(ts))


class Op(Pattern):
    """An operator; nested in another pattern it matches the producer of that operand."""

    def __init__(
        self,
        types: str | tuple | set | frozenset,
        *operands: Pattern | None,
        name: str | None = None,
        activation: str | tuple | set | None = None,
        options: dict | None = None,
        where: Callable[[Operator], bool] | None = None,
        single_use: bool = False,
        commutative: bool | None = None,
        out: int | None = 0,
    ):
        self.types = frozenset([types] if isinstance(types, str) else types)
        for t in self.types:
            _check_type(t)
        self.operands = list(operands)
        for p in self.operands:
            if p is not None and not isinstance(p, Pattern):
                raise PatternError(
                    f"operand pattern {p!r} is not a pattern (Op, Any, Const, Rest or None); "
                    "several op types are given as a tuple: Op(('ADD', 'SUB'), ...)"
                )
        if any(isinstance(p, Rest) for p in self.operands[:-1]):
            raise PatternError("Rest() must be the last operand pattern")
        self.name, self.where, self.single_use, self.out = name, where, single_use, out
        acts = [activation] if isinstance(activation, str) else activation
        self.activation = None if acts is None else frozenset(acts)
        for act in sorted(self.activation or ()):
            if act not in ACTIVATION_NAMES.values():
                raise PatternError(
                    f"unknown activation {act!r}{did_you_mean(act, ACTIVATION_NAMES.values())}; "
                    f"activations: {', '.join(ACTIVATION_NAMES.values())}"
                )
        self.options = {k: _check_option(self.types, k, v) for k, v in (options or {}).items()}
        if commutative is None:
            commutative = len(self.operands) == 2 and self.types <= COMMUTATIVE
        self.commutative = commutative

    # ---- public API
    def match(self, sg: Subgraph, op: Operator) -> dict | None:
        """The captures (name -> Tensor, Operator or list) if `op` matches, else None."""
        caps: dict = {}
        if self.bind_op(sg, op, caps):
            return None
        caps.pop(MATCHED, None)
        return caps

    def why_not(self, sg: Subgraph, op: Operator) -> str | None:
        """None if `op` matches, else the first constraint that failed."""
        return self.bind_op(sg, op, {})

    def candidates(self, sg: Subgraph) -> list[Operator]:
        """Ops of the root types, in execution order."""
        return [op for op in sg.operators if op.type in self.types]

    def find(self, sg: Subgraph) -> Iterator[tuple[Operator, dict]]:
        """(op, captures) for every candidate that matches."""
        for op in self.candidates(sg):
            caps = self.match(sg, op)
            if caps is not None:
                yield op, caps

    # ---- matching
    def bind(self, sg, t, caps):
        if t is None:
            return "operand is absent"
        producer = sg.producer(t)
        if producer is None:
            kind = "a constant" if t.is_constant else "a subgraph input or state"
            return f"{_show(t)} is {kind}, not produced by {self._types()}"
        if self.out is not None and (
            len(producer.outputs) <= self.out or producer.outputs[self.out] is not t
        ):
            return f"{_show(t)} is not output {self.out} of {producer.type}"
        return self.bind_op(sg, producer, caps, t)

    def bind_op(self, sg: Subgraph, op: Operator, caps: dict, read: Tensor | None = None):
        """Match `op` itself (None or the reason it fails); `read` is the output that the
        enclosing pattern reads, when nested. On a match, `op` joins the tuple of matched ops
        under the private key MATCHED (innermost first; a tuple, so the commutative retries,
        which work on copies of the captures, stay right)."""
        why = self._bind_op(sg, op, caps, read)
        if why is None:
            caps[MATCHED] = (*caps.get(MATCHED, ()), op)
        return why

    def _bind_op(self, sg: Subgraph, op: Operator, caps: dict, read: Tensor | None):
        if op.type not in self.types:
            return f"op is {op.type}, want {self._types()}"
        if self.activation is not None:
            act = op.activation
            if act not in self.activation:
                return f"{op.type}: fused activation is {act}, want {'|'.join(self._acts())}"
        for field, want in self.options.items():
            have = op.option(field, _MISSING)
            ok = want(have) if callable(want) else have == want
            if have is _MISSING or not ok:
                shown = _fn_name(want) if callable(want) else _show_opt(field, want)
                return f"{op.type}: option {field}={_show_opt(field, have)}, want {shown}"
        if self.where is not None and not self.where(op):
            return f"{op.type}: fails {_fn_name(self.where)}"
        if self.single_use:
            t = read if read is not None else op.outputs[self.out or 0] if op.outputs else None
            if t is None or len(sg.consumers(t)) != 1 or any(t is o for o in sg.outputs):
                users = len(sg.consumers(t)) if t is not None else 0
                extra = " and is a subgraph output" if any(t is o for o in sg.outputs) else ""
                return f"{op.type}: output has {users} reader(s){extra}, want a single use"
        if why := _bind(caps, self.name, op):
            return why
        if not self.operands:
            return None
        if not (self.commutative and len(op.inputs) == 2):
            return self._bind_operands(sg, op, op.inputs, caps)
        # commutative: try both orders, each on a copy of the captures so far
        first, swapped = dict(caps), dict(caps)
        why1 = self._bind_operands(sg, op, op.inputs, first)
        why2 = why1 and self._bind_operands(sg, op, op.inputs[::-1], swapped)
        if why1 and why2:
            d1, d2 = why1.count(" <- "), why2.count(" <- ")  # report the deeper failure
            return why1 if d1 > d2 else why2 if d2 > d1 else f"{why1}; swapped: {why2}"
        caps.update(swapped if why1 else first)
        return None

    def _bind_operands(self, sg, op, inputs, caps) -> str | None:
        pats = self.operands
        rest = pats[-1] if pats and isinstance(pats[-1], Rest) else None
        fixed = pats[:-1] if rest is not None else pats
        if len(inputs) < len(fixed) or (rest is None and len(inputs) != len(fixed)):
            want = f"at least {len(fixed)}" if rest is not None else str(len(fixed))
            return f"{op.type}: has {len(inputs)} operands, want {want}"
        for i, (p, t) in enumerate(zip(fixed, inputs)):
            if p is None:
                if t is not None:
                    return f"{op.type} operand {i}: present, want absent"
            elif why := _at(f"{op.type} operand {i}", p, sg, t, caps):
                return why
        return rest.bind_many(sg, list(inputs[len(fixed) :]), caps) if rest else None

    def _types(self) -> str:
        return "|".join(sorted(self.types))

    def _acts(self) -> list[str]:
        return sorted(self.activation)

    def __repr__(self):
        inner = ", ".join(repr(p) for p in self.operands)
        return f"Op({self._types()}{', ' if inner else ''}{inner})"


_MISSING = object()


def _at(where: str, p: Pattern, sg, t, caps) -> str | None:
    """Match a sub-pattern, prefixing a failure with where it happened."""
    why = p.bind(sg, t, caps)
    return f"{where} <- {why}" if why else None


def _show_opt(field: str, v) -> str:
    """An option value as written in a pattern: the name of an enum value, else repr."""
    if v is _MISSING:
        return "<none>"
    names = {c: n for n, c in enum_codes(field).items()}
    return names.get(v, repr(v)) if isinstance(v, int) else repr(v)


def _check_type(t: str) -> None:
    """Raise PatternError unless `t` is a builtin op name or CUSTOM:code."""
    if not isinstance(t, str):
        raise PatternError(f"op type {t!r} is not a string")
    if t in OP_CODES and t != "CUSTOM" or t.startswith("CUSTOM:") or re.fullmatch(r"OP_\d+", t):
        return
    if t == "CUSTOM":
        raise PatternError("custom ops match as 'CUSTOM:<custom_code>', e.g. 'CUSTOM:MyOp'")
    hint = f" (did you mean {_OTHER_NAMES[t.upper()]}?)" if t.upper() in _OTHER_NAMES else ""
    raise PatternError(
        f"unknown op type {t!r}{hint or did_you_mean(t, OP_CODES)}; op types are the "
        f"builtin names of the TFLite schema ({', '.join(sorted(set(OP_CODES) - {'CUSTOM'}))}) "
        "or 'CUSTOM:code'"
    )


def _check_option(types: frozenset, field: str, want):
    """`want` for the option `field` of ops of `types`, enum names turned into codes; raise
    PatternError if no op of those types has that option."""
    kinds = sorted({k for t in types if (k := options_kind(t)) is not None})
    fields: dict = {}
    for kind in kinds:
        for f in spec(kind).fields:
            fields.setdefault(f.name, (kind, f))
    if field not in fields:
        ops = "|".join(sorted(types))
        have = f"options ({', '.join(kinds)}): {', '.join(fields)}" if fields else "no options"
        raise PatternError(
            f"unknown option {field!r}{did_you_mean(field, fields)} for {ops}; {ops} has {have}"
        )
    if callable(want):
        return want
    try:
        return option_value(*fields[field], want)
    except OptionsError as e:
        raise PatternError(str(e)) from None


def _fn_name(fn) -> str:
    """A predicate as a user finds it: its name, or where a lambda is written."""
    name = getattr(fn, "__name__", "")
    code = getattr(fn, "__code__", None)
    if name and name != "<lambda>":
        return name
    if code is not None:
        return f"the predicate at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    return "a predicate"


def _brief(a) -> str:
    """A constant's value in a few characters: the scalar, or shape, dtype and first values."""
    if a is None:
        return "(no numpy value)"
    a = np.asarray(a)
    items = [f"{x:.4g}" if isinstance(x, float) else str(x) for x in a.reshape(-1)[:4].tolist()]
    if a.ndim == 0:
        return items[0]
    more = ", ..." if a.size > 4 else ""
    return f"{list(a.shape)} {a.dtype} [{', '.join(items)}{more}]"
