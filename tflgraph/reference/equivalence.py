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
random values of the region's inputs and returns None when they agree, else the reason;
`check_values(sg, tensors, expected, feeds)` compares tensors with reference arrays computed
from the same feeds (a loop body against a cell's equations). `bound(a, rtol, atol)` is the
tolerance itself, which `verify` uses with its own atol/rtol. Callers whose tolerance differs
from the default say why next to the call.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.reference.hybrid import is_hybrid
from tflgraph.reference.interpreter import (
    KERNELS,
    QUANTIZED_OPERANDS_OK,
    STATEFUL,
    evaluate_tensors,
)

RTOL = 1e-5  # the default relative bound for floats (see the module docstring)


def finite_max_abs(a: np.ndarray) -> float:
    """max |a| over the finite elements (0 if there are none)."""
    a = np.asarray(a, np.float64)
    return float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))


def magnitude(a: np.ndarray) -> float:
    """max(1, max finite |a|): the scale the relative bound is taken against."""
    return max(1.0, finite_max_abs(a))


def bound(a: np.ndarray, rtol: float = RTOL, atol: float | None = None) -> float:
    """The largest tolerated error against the reference `a`: max(atol, rtol * max finite |a|).
    `atol` defaults to `rtol`, which is the checker's bound rtol * max(1, max finite |a|)."""
    return max(rtol if atol is None else atol, rtol * finite_max_abs(a))


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
    tol = 0.0 if exact else bound(a, rtol)
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


# where elementwise rewrites break: activation clamp points (RELU6 at 0 and 6, RELU_N1_TO_1 and
# TANH/LOGISTIC saturation at +-1), zero, and the halves and thirds of hard_sigmoid/hard_swish
CLAMP_POINTS = np.array([0.0, 1.0, -1.0, 6.0, -6.0, 0.5, -0.5, 3.0, -3.0])
Sampler = Callable[[Tensor, np.random.Generator, int], "np.ndarray | None"]


def probe_feed(
    t: Tensor,
    rng: np.random.Generator,
    trial: int,
    observed: dict[Tensor, tuple[float, float]] | None = None,
):
    """Values for `t` on sample `trial` of a rule's check, drawn where rewrites break:

    - trial 0: uniform in [-1, 1);
    - trial 1 (and every odd one): random signs with magnitudes log-uniform in [1e-3, 1e3],
      a quarter of the elements set to CLAMP_POINTS;
    - trial 2 (every even one after 0): uniform over the range the model produced for `t`
      (`observed`, widened by 10% and to 1 either side of 0), else uniform in [-8, 8), which
      crosses every clamp point.

    Integer tensors (counters, indices) get integers in [0, 8), or in their observed range;
    bool tensors random truth values. None for other dtypes (strings, resources)."""
    if t.dtype is None or t.dtype.kind not in "fbiu":
        return None
    shape = t.shape
    if t.dtype.kind == "b":
        return rng.random(shape) < 0.5
    lo, hi = observed.get(t, (None, None)) if observed is not None else (None, None)
    if t.dtype.kind in "iu":
        lo, hi = (0, 7) if lo is None else (int(np.floor(lo)), int(np.ceil(hi)))
        return rng.integers(lo, hi + 1, shape).astype(t.dtype)
    if trial == 0:
        x = rng.uniform(-1.0, 1.0, shape)
    elif trial % 2:
        x = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), shape)) * rng.choice([-1.0, 1.0], shape)
        special = rng.random(shape) < 0.25
        x = np.where(special, rng.choice(CLAMP_POINTS, shape), x)
    elif lo is not None:
        pad = 0.1 * (hi - lo)
        x = rng.uniform(min(lo - pad, -1.0), max(hi + pad, 1.0), shape)
    else:
        x = rng.uniform(-8.0, 8.0, shape)
    return np.asarray(x).astype(t.dtype)


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
    sampler: Sampler | None = None,
    rtol: float = RTOL,
    hybrid_as_float: bool = False,
) -> str | None:
    """None if `new` equals `old` on the reference interpreter, else why not.

    The region is the given ops (default: every op that `old` or `new` depends on, back to the
    subgraph's inputs); its inputs get seeded random values from `random_feed`, or from
    `sampler(tensor, rng, trial)` (e.g. `probe_feed`), or `feeds(rng)` gives them all as
    {tensor: array}; `trials` times. Tensors may be lists of equal length (each pair is
    compared). `hybrid_as_float`: hybrid layers compute the float layers they approximate, for
    rewrites that leave them as they are (tflgraph/reference/hybrid.py)."""
    olds = list(old) if isinstance(old, (list, tuple)) else [old]
    news = list(new) if isinstance(new, (list, tuple)) else [new]
    if feeds is None:
        inputs = region_inputs(sg, _ancestors(sg, olds + news) if region is None else region)
        feeds = partial(_sampled_feeds, inputs, sampler or _uniform, itertools.count())

    def judge(values: dict, got: list) -> str | None:
        for a, b, t in zip(got[: len(olds)], got[len(olds) :], olds):
            why = compare(a, b, rtol, what=repr(t.name))
            if why:
                return f"not equal: {why}"
        return None

    return _trials(sg, olds + news, feeds, judge, trials, seed, hybrid_as_float)


def check_values(
    sg: Subgraph,
    tensors: list[Tensor],
    expected: Callable[[dict], list],
    feeds: Callable[[np.random.Generator], dict],
    trials: int = 3,
    seed: int = 0,
    *,
    rtol: float = RTOL,
    what: list[str] | None = None,
) -> str | None:
    """None if `tensors`, evaluated on `feeds(rng)`, equal the reference arrays
    `expected(feeds)` (one per tensor), `trials` times; else why not, naming the tensor by
    `what` (default: its name). A value is compared in its reference's shape when the sizes
    agree: a loop body may hold [1, B, u] where the equations give [B, u]."""
    names = what or [repr(t.name) for t in tensors]

    def judge(values: dict, got: list) -> str | None:
        for r, g, name in zip(expected(values), got, names):
            if np.size(g) == np.size(r):
                g = np.reshape(g, np.shape(r))
            why = compare(r, g, rtol, what=name)
            if why:
                return why
        return None

    return _trials(sg, tensors, feeds, judge, trials, seed)


def _trials(sg: Subgraph, wanted: list[Tensor], feeds, judge, trials: int, seed: int, hybrid=False):
    """Evaluate `wanted` on `feeds(rng)` (a dict, or a str saying why there are none) `trials`
    times; the first reason `judge(feeds, values)` gives, else None."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        values = feeds(rng)
        if isinstance(values, str):
            return values
        try:
            got = evaluate_tensors(sg, values, wanted, hybrid_as_float=hybrid)
        except (TflgraphError, ValueError) as e:
            return f"cannot check: {e}"
        why = judge(values, got)
        if why:
            return why
    return None


def _uniform(t: Tensor, rng: np.random.Generator, trial: int):
    return random_feed(t, rng)


def _sampled_feeds(inputs: list[Tensor], sampler: Sampler, trials, rng) -> dict | str:
    trial = next(trials)
    values = {}
    for t in inputs:
        x = sampler(t, rng, trial)
        if x is None:
            return f"cannot check: no random values for {t.type_name} tensor {t.name!r}"
        values[t] = x
    return values


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


def check_models(
    old: Model, new: Model, invokes: int = 3, seed: int = 0, hybrid_as_float: bool = False
) -> str | None:
    """None if `new` computes what `old` does on the reference interpreter, else why not
    ("not equal: ..." or "cannot check: ...").

    Both main subgraphs get the same seeded inputs, `invokes` times in a row (variable tensors
    carried). Where an op the interpreter cannot run (a Flex op, TOPK_V2, a quantized kernel)
    stands between the inputs and an output, the check is made at the values that op reads
    (matched by tensor name) instead, provided everything from those ops on is the same in both
    models (same ops, operand names, options and constants): equal values there give equal
    outputs. `hybrid_as_float`: hybrid layers compute the float layers they approximate
    (tflgraph/reference/hybrid.py) instead of being ops the interpreter cannot run."""
    (seen_a, beyond_a) = _observed(old.main, hybrid_as_float)
    (seen_b, beyond_b) = _observed(new.main, hybrid_as_float)
    if beyond_a != beyond_b:
        return "cannot check: the ops the interpreter cannot run differ between the models"
    if set(seen_a) != set(seen_b):
        missing = sorted(set(seen_a) ^ set(seen_b))[:3]
        return f"cannot check: values {missing} are not in both models"
    if not seen_a:
        return "cannot check: the interpreter can evaluate no output"
    names = sorted(seen_a)
    if [t.shape for t in old.main.inputs] != [t.shape for t in new.main.inputs]:
        return "not equal: the inputs differ"
    rng, state_a, state_b = np.random.default_rng(seed), {}, {}
    for _ in range(invokes):
        xs = [random_feed(t, rng) for t in old.main.inputs]
        if any(x is None for x in xs):
            return "cannot check: an input is neither float nor bool"
        feeds = [dict(zip(old.main.inputs, xs)), dict(zip(new.main.inputs, xs))]
        try:
            got_a = evaluate_tensors(
                old.main, feeds[0], [seen_a[n] for n in names], state_a, hybrid_as_float
            )
            got_b = evaluate_tensors(
                new.main, feeds[1], [seen_b[n] for n in names], state_b, hybrid_as_float
            )
        except (TflgraphError, ValueError, TypeError, IndexError) as e:
            return f"cannot check: {e}"
        for name, x, y in zip(names, got_a, got_b):
            why = compare(x, y, what=repr(name))
            if why:
                return f"not equal: {why}"
    return None


def _observed(sg: Subgraph, hybrid_as_float: bool) -> tuple[dict[str, Tensor], list[str]]:
    """({name: tensor} the check compares, a signature of the ops beyond the interpreter: the
    ops it cannot run and every op after them)."""
    beyond: set[Operator] = set()
    for op in sg.operators:  # the ops that cannot run, and everything after them
        if not can_evaluate(op, hybrid_as_float) or any(
            sg.producer(t) in beyond for t in op.inputs if t is not None
        ):
            beyond.add(op)
    seen = {}
    for op in beyond:
        for t in op.inputs:
            if t is not None and not t.is_constant and sg.producer(t) not in beyond:
                seen[t.name] = t
    for t in sg.outputs:
        if sg.producer(t) not in beyond:
            seen[t.name] = t
    signature = sorted(
        repr(
            (
                op.type,
                [None if t is None else (t.name, _bytes(t)) for t in op.inputs],
                [None if t is None else t.name for t in op.outputs],
                op.options,
                _bytes_of(op.custom_options),
            )
        )
        for op in beyond
    )
    return seen, signature


def _bytes(t: Tensor) -> bytes | None:
    return t.buffer.data.tobytes() if t.is_constant else None


def _bytes_of(a) -> bytes | None:
    return None if a is None else np.asarray(a).tobytes()


def can_evaluate(op: Operator, hybrid_as_float: bool = False) -> bool:
    """The interpreter has a kernel for `op` and for every op of its subgraphs, and refuses
    none of its operands (quantized ones, but for QUANTIZED_OPERANDS_OK: DEQUANTIZE, SHAPE,
    RANK, and hybrid layers when evaluated `hybrid_as_float`). A kernel may still refuse an
    option it does not implement (evaluation then raises)."""
    if op.type not in KERNELS and op.type not in STATEFUL:
        return False
    quantized = any(t.is_quantized for t in op.inputs if t is not None)
    if quantized and op.type not in QUANTIZED_OPERANDS_OK:
        if not (hybrid_as_float and is_hybrid(op)):
            return False
    return all(can_evaluate(o, hybrid_as_float) for sub in op.subgraphs() for o in sub.iter_ops())
