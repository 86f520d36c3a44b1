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
      to values or predicates, `where(op) -> bool` is any other check, `single_use` asks that
      the output be read by one op and not be a subgraph output, `out` the output index
      that the enclosing pattern reads (None: any).
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

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from tflgraph.io.schema import ACTIVATION_NAMES
from tflgraph.ir import Operator, Subgraph, Tensor

COMMUTATIVE = {
    "ADD", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE",
    "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
}  # fmt: skip


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
            return f"constant {t.name!r} fails {_fn_name(self.where)}"
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
        self.operands = list(operands)
        if any(isinstance(p, Rest) for p in self.operands[:-1]):
            raise ValueError("Rest() must be the last operand pattern")
        self.name, self.where, self.single_use, self.out = name, where, single_use, out
        acts = [activation] if isinstance(activation, str) else activation
        self.activation = None if acts is None else frozenset(acts)
        unknown = (self.activation or set()) - set(ACTIVATION_NAMES.values())
        if unknown:
            raise ValueError(f"unknown activation {sorted(unknown)}")
        self.options = dict(options or {})
        if commutative is None:
            commutative = len(self.operands) == 2 and self.types <= COMMUTATIVE
        self.commutative = commutative

    # ---- public API
    def match(self, sg: Subgraph, op: Operator) -> dict | None:
        """The captures (name -> Tensor, Operator or list) if `op` matches, else None."""
        caps: dict = {}
        return None if self.bind_op(sg, op, caps) else caps

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
        enclosing pattern reads, when nested."""
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
                shown = _fn_name(want) if callable(want) else repr(want)
                return f"{op.type}: option {field}={_show_opt(have)}, want {shown}"
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


def _show_opt(v) -> str:
    return "<none>" if v is _MISSING else repr(v)


def _fn_name(fn) -> str:
    name = getattr(fn, "__name__", "")
    return "a predicate" if not name or name == "<lambda>" else name
