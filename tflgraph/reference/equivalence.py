"""The one equivalence checker: are two computations the same on the reference interpreter?

Every numerical check in tflgraph (a rule's check of its rewrite, a pass's check of a loop
body against cell equations, a strip round, `verify` in the real runtimes, the tests) compares
values with `compare` and, where it evaluates tensors itself, draws inputs with `random_feed`:

- The bound: `|a - b| <= rtol * max(1, max finite |a|)` elementwise-max, `rtol` = 1e-5 by
  default (float32 rounding of reassociated sums stays well inside it; a wrong weight, gate or
  sign does not). `a` is the reference. NaN must meet NaN and inf the same inf. The magnitude
  takes finite values only, so an inf in the reference cannot make every finite error pass.
- Integers and booleans are exact (`rtol` is ignored): counters, indices and masks do not round.
- Shapes must be equal: a broadcast that changes a shape is a difference, not a tolerance.

`check_equal(sg, old, new, trials, seed)` evaluates two tensors of one subgraph on seeded
random values of the region's inputs and returns None when they agree, else the reason.
Callers whose tolerance differs from the default say why next to the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.reference.interpreter import evaluate_tensors

RTOL = 1e-5  # the default relative bound for floats (see the module docstring)


def magnitude(a: np.ndarray) -> float:
    """max(1, max finite |a|): the scale the relative bound is taken against."""
    a = np.asarray(a, np.float64)
    return max(1.0, float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)))


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the elements, 0 where both are the same NaN or the same inf, inf where
    only one of them is NaN or inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a.size:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf
        diff = np.where(same, 0.0, np.abs(a - b))
    return float(np.max(np.nan_to_num(diff, nan=np.inf, posinf=np.inf)))


def compare(a, b, rtol: float = RTOL, what: str = "values") -> str | None:
    """None if `b` equals the reference `a` within the bound, else a one-line reason."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"{what}: shape {list(a.shape)} became {list(b.shape)}"
    if a.dtype.kind in "SUO" or b.dtype.kind in "SUO":
        return None if np.array_equal(a, b) else f"{what}: differ"
    err = max_error(a, b)
    exact = a.dtype.kind in "biu" and b.dtype.kind in "biu"
    tol = 0.0 if exact else rtol * magnitude(a)
    if err <= tol:
        return None
    return f"{what}: max error {err:.3g} > {tol:.3g}"


def random_feed(t: Tensor, rng: np.random.Generator, low: float = -1.0, high: float = 1.0):
    """Seeded random values for a float (uniform in [low, high)) or bool tensor; None for any
    other dtype (the caller says it cannot check)."""
    if t.dtype is None or t.dtype.kind not in "fb":
        return None
    if t.dtype.kind == "f":
        return rng.uniform(low, high, t.shape).astype(t.dtype)
    return rng.random(t.shape) < 0.5


def region_inputs(sg: Subgraph, region: Iterable[Operator]) -> list[Tensor]:
    """The non-constant tensors the ops of `region` read but no op of the region writes, in
    first-use order: what a check of the region must feed."""
    region = set(region)
    frontier: dict[int, Tensor] = {}
    for op in sg.operators:
        if op not in region:
            continue
        for t in op.inputs:
            if t is not None and not t.is_constant and sg.producer(t) not in region:
                frontier.setdefault(id(t), t)
    return list(frontier.values())


def check_equal(
    sg: Subgraph,
    old: Tensor | list[Tensor],
    new: Tensor | list[Tensor],
    trials: int = 3,
    seed: int = 0,
    *,
    region: Iterable[Operator] | None = None,
    feeds: Callable[[np.random.Generator], dict] | None = None,
    rtol: float = RTOL,
) -> str | None:
    """None if `new` equals `old` on the reference interpreter, else why not.

    The region is the given ops (default: every op that `old` or `new` depends on, back to the
    subgraph's inputs); its inputs get seeded random values from `random_feed` (or from
    `feeds(rng)`, which returns {tensor: array}), `trials` times. Tensors may be lists of
    equal length (each pair is compared)."""
    olds = list(old) if isinstance(old, (list, tuple)) else [old]
    news = list(new) if isinstance(new, (list, tuple)) else [new]
    if region is None:
        region = _ancestors(sg, olds + news)
    inputs = region_inputs(sg, region)
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        if feeds is not None:
            values = feeds(rng)
        else:
            values = {}
            for t in inputs:
                x = random_feed(t, rng)
                if x is None:
                    return f"cannot check: no random values for {t.type_name} tensor {t.name!r}"
                values[t] = x
        try:
            got = evaluate_tensors(sg, values, olds + news)
        except (TflgraphError, ValueError) as e:
            return f"cannot check: {e}"
        for a, b, t in zip(got[: len(olds)], got[len(olds) :], olds):
            why = compare(a, b, rtol, what=repr(t.name))
            if why:
                return f"not equal: {why}"
    return None


def _ancestors(sg: Subgraph, tensors: list[Tensor]) -> set[Operator]:
    ops: set[Operator] = set()
    stack = [sg.producer(t) for t in tensors]
    while stack:
        op = stack.pop()
        if op is None or op in ops:
            continue
        ops.add(op)
        stack.extend(sg.producer(t) for t in op.inputs if t is not None)
    return ops
