"""A numpy reference evaluator for float TFLite graphs.

Passes use it to prove a structural match numerically before rewriting (evaluate a loop body
and its fused replacement on the same random states) and to fold constant subexpressions
(`evaluate_tensors` runs only the ops a wanted tensor depends on). The kernels, one small
function per op, live in kernels.py, kernels_nn.py and kernels_flex.py (the Flex TensorList
ops); this module walks the graph, feeds constants and variable tensors, runs WHILE loops
through their cond/body subgraphs, and keeps the state of variable tensors across calls when
the caller passes a `state` dict.

Float32 semantics, as LiteRT computes them (agreement within 1e-5 relative is tested op by op).
Quantized operands (int8 weights of dynamic-range models, int8/uint8 activations) are refused:
their LiteRT numerics are not float numerics. A caller whose check does not depend on a hybrid
layer's arithmetic may ask for hybrid layers (int8 weights, float activations) to be computed
as the float layers they approximate (`hybrid_as_float`, tflgraph/reference/hybrid.py).
"""

from __future__ import annotations

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.reference import kernels, kernels_flex, kernels_nn, kernels_quant
from tflgraph.reference.hybrid import dequantized, is_hybrid, is_int8_weight
from tflgraph.reference.kernels import UnsupportedOp

__all__ = [
    "KERNELS",
    "EvaluationError",
    "UnsupportedOp",
    "evaluate",
    "evaluate_subgraph",
    "evaluate_tensors",
    "observe_shapes",
    "value_ranges",
]


class EvaluationError(TflgraphError, ValueError):
    """The graph cannot be evaluated on these values: a tensor without a value, or an op whose
    operands do not fit (index out of range, shapes that do not broadcast, ...)."""


# op type -> fn(op, *inputs)
KERNELS = {
    **kernels.KERNELS,
    **kernels_nn.NN_KERNELS,
    **kernels_flex.FLEX_KERNELS,
    **kernels_quant.QUANT_KERNELS,
}


def evaluate(model: Model, inputs: list[np.ndarray], state: dict | None = None) -> list:
    """Outputs of the main subgraph (model.subgraphs[0]) on `inputs`, in its output order."""
    return evaluate_subgraph(model.subgraphs[0], inputs, state)


def evaluate_subgraph(sg: Subgraph, inputs: list[np.ndarray], state: dict | None = None) -> list:
    """Run every op of `sg` on `inputs` (in sg.inputs order); outputs in sg.outputs order.

    `state` maps variable tensors to their current values (absent ones start at zeros); the
    final values of stateful ops are written back into it, so passing the same dict to
    successive calls emulates invokes without reset. It also holds resource variables and
    which CALL_ONCE inits have run, under tuple keys."""
    if len(inputs) != len(sg.inputs):
        raise EvaluationError(
            f"subgraph {sg.name!r} takes {len(sg.inputs)} inputs, got {len(inputs)}"
        )
    values = _feed(sg.inputs, inputs)
    state = state if state is not None else {}
    _record_shapes(state, sg.inputs, values)
    _run(sg, sg.operators, values, state)
    return [_value(t, values, state) for t in sg.outputs]


SHAPES = ("SHAPES",)  # the key of `state` under which observe_shapes collects shapes
# the key of `state` holding fn(tensor, value), called with every value a subgraph's inputs and
# ops take (inside WHILE bodies once per step): calibration records ranges with it
OBSERVER = ("OBSERVER",)
_ANY_VALUES = ("ANY VALUES",)  # set in `state`: quantized operands are not refused
_HYBRID_AS_FLOAT = ("HYBRID AS FLOAT",)  # set in `state`: hybrid layers use float weights


def observe_shapes(sg: Subgraph, inputs: list[np.ndarray]) -> dict[Tensor, set[tuple]]:
    """Every shape each tensor takes while `sg` runs on `inputs`: the inputs and op results of
    `sg` and of the subgraphs it runs (a WHILE body's tensors once per step, so a growing
    accumulator shows several shapes). Tensors never computed (an IF branch not taken) are
    absent. Quantized operands are let through: the float kernels then compute values that
    mean nothing, but of the right shapes (only the shapes are returned)."""
    state: dict = {SHAPES: {}, _ANY_VALUES: True}
    with np.errstate(all="ignore"):  # int8 arithmetic of meaningless values overflows
        evaluate_subgraph(sg, inputs, state)
    return state[SHAPES]


def _record_shapes(state: dict, tensors, values: dict) -> None:
    """Tell observe_shapes (SHAPES) and an OBSERVER the values `tensors` just took."""
    seen, observe = state.get(SHAPES), state.get(OBSERVER)
    if seen is None and observe is None:
        return
    for t in tensors:
        if t is not None and id(t) in values:
            if seen is not None:
                seen.setdefault(t, set()).add(values[id(t)].shape)
            if observe is not None:
                observe(t, values[id(t)])


def evaluate_tensors(
    sg: Subgraph,
    feeds: dict[Tensor, np.ndarray],
    wanted: list[Tensor],
    state: dict | None = None,
    hybrid_as_float: bool = False,
) -> list:
    """Values of `wanted`, running only the ops they depend on. Tensors that are neither fed,
    produced, constant nor variable raise EvaluationError (they would need a feed).
    `hybrid_as_float`: hybrid layers (here and in the subgraphs they run) compute the float
    layer with their dequantized weights instead of being refused; LiteRT's hybrid kernels
    differ from that by the activations' quantization error."""
    state = state if state is not None else {}
    if hybrid_as_float:
        state[_HYBRID_AS_FLOAT] = True
    values = _feed(list(feeds), list(feeds.values()))
    # by hand, as it stops at fed tensors (nx.ancestors on a view without them: 7x slower)
    needed, stack, seen = set(), [t for t in wanted], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or id(t) in values:
            continue
        seen.add(id(t))
        writers = [sg.producer(t)]
        if t.is_variable:  # a fused RNN op updates its state operands in place
            writers += [op for op in sg.consumers(t) if _updates_in_place(op, t)]
        for op in writers:
            if op is not None and op not in needed:
                needed.add(op)
                stack.extend(x for x in op.inputs if x is not None)
    ops = [op for op in sg.operators if op in needed]
    _run(sg, ops, values, state)
    return [_value(t, values, state) for t in wanted]


def _updates_in_place(op: Operator, t: Tensor) -> bool:
    return any(op.inputs[k] is t for k in kernels_nn.STATE_OPERANDS.get(op.type, ()))


def _feed(tensors, arrays) -> dict:
    values = {}
    for t, x in zip(tensors, arrays):
        x = np.asarray(x)
        values[id(t)] = x.astype(t.dtype) if t.dtype is not None and x.dtype != t.dtype else x
    return values


def _value(t: Tensor, values: dict, state: dict | None) -> np.ndarray:
    v = values.get(id(t))
    if v is not None:
        return v
    if t.is_constant:
        if t.sparsity is not None and t.dtype is not None:
            return kernels.sparse_to_dense(t.buffer.data.view(t.dtype), t.shape, t.sparsity)
        if t.data is None:
            raise UnsupportedOp(f"constant {t.name!r} of type {t.type_name} has no numpy dtype")
        return t.data
    if t.is_variable:
        if state is not None and t in state:
            return state[t]
        return np.zeros(t.shape, t.dtype)
    raise EvaluationError(
        f"tensor {t.name!r} has no value (not fed, produced, constant or variable)"
    )


def _run(sg: Subgraph, ops: list[Operator], values: dict, state: dict) -> None:
    for op in ops:
        xs = [None if t is None else _value(t, values, state) for t in op.inputs]
        try:
            # inf and NaN are float32 results as the runtimes compute them, not warnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                results = _call(op, xs, state)
        except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, TflgraphError):
                raise
            name = next((t.name for t in op.outputs if t is not None), "")
            raise EvaluationError(f"{op.type} -> {name!r}: {e}") from e
        if isinstance(results, np.ndarray) or not isinstance(results, (tuple, list)):
            results = (results,)
        n = len(op.outputs)
        for t, r in zip(op.outputs, results[:n]):
            if t is not None:
                values[id(t)] = np.asarray(r)
        _record_shapes(state, op.outputs, values)
        for k, r in zip(kernels_nn.STATE_OPERANDS.get(op.type, ()), results[n:]):
            t = op.inputs[k]
            if t is not None and t.is_variable:
                state[t] = np.asarray(r)
                values[id(t)] = state[t]


# Ops whose LiteRT and TFLM kernels move the stored integers of a quantized tensor unchanged
# (no requantization, whatever the scales): computed on the stored integers, their result is
# the output's stored integers.
RAW_COPY_OPS = frozenset(
    {
        "BROADCAST_TO",
        "EXPAND_DIMS",
        "FILL",
        "GATHER",
        "RESHAPE",
        "SLICE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "TILE",
        "TRANSPOSE",
    }
)
# Ops whose kernel is right for quantized operands too: DEQUANTIZE and QUANTIZE read the
# quantization, SHAPE and RANK read the shape only, RAW_COPY_OPS copy stored integers.
QUANTIZED_OPERANDS_OK = frozenset({"DEQUANTIZE", "QUANTIZE", "SHAPE", "RANK"}) | RAW_COPY_OPS


def _call(op: Operator, xs: list, state: dict):
    if op.type in STATEFUL:
        return STATEFUL[op.type](op, xs, state)
    fn = KERNELS.get(op.type)
    if fn is None:
        raise UnsupportedOp(f"no reference kernel for {op.type}")
    if state.get(_HYBRID_AS_FLOAT) and is_hybrid(op):
        xs = [dequantized(t) if is_int8_weight(t) else x for t, x in zip(op.inputs, xs)]
        return fn(op, *xs)
    if op.type not in QUANTIZED_OPERANDS_OK and not state.get(_ANY_VALUES):
        for t in op.inputs:
            if t is not None and t.is_quantized:
                raise UnsupportedOp(f"{op.type} with quantized operand {t.name!r} ({t.type_name})")
    return fn(op, *xs)


def _truth(x) -> bool:
    return bool(np.asarray(x).reshape(-1)[0])


def _while(op: Operator, xs: list, state: dict) -> list:
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    while _truth(evaluate_subgraph(cond, xs, state)[0]):
        xs = evaluate_subgraph(body, xs, state)
    return xs


def _if(op: Operator, xs: list, state: dict) -> list:
    branch = op.option("then_subgraph_index") if _truth(xs[0]) else op.option("else_subgraph_index")
    return evaluate_subgraph(branch, xs[1:], state)


def _call_once(op: Operator, xs: list, state: dict) -> list:
    """Runs its init subgraph on the first invoke of a `state` (as the runtimes do)."""
    init = op.option("init_subgraph_index")
    if ("CALL_ONCE", init) not in state:
        state["CALL_ONCE", init] = True
        evaluate_subgraph(init, [], state)
    return []


def _var_handle(op: Operator, xs: list, state: dict) -> np.ndarray:
    """A resource handle: the variable's key in `state`, as a 0-d object array."""
    handle = np.empty((), object)
    handle[()] = ("VARIABLE", op.option("container") or "", op.option("shared_name") or "")
    return handle


def _read_variable(op: Operator, xs: list, state: dict) -> np.ndarray:
    key = xs[0][()]
    if key not in state:
        raise EvaluationError(f"{op.type}: resource variable {key[2]!r} read before assignment")
    return state[key]


def _assign_variable(op: Operator, xs: list, state: dict) -> list:
    state[xs[0][()]] = np.array(xs[1])
    return []


# Ops that run subgraphs or touch state; they get the state dict besides their inputs.
STATEFUL = {
    "WHILE": _while,
    "IF": _if,
    "CALL_ONCE": _call_once,
    "VAR_HANDLE": _var_handle,
    "READ_VARIABLE": _read_variable,
    "ASSIGN_VARIABLE": _assign_variable,
}


def value_ranges(sg: Subgraph, inputs: list[np.ndarray]) -> dict[Tensor, tuple[float, float]]:
    """(min, max) of every finite numeric value the ops of `sg` compute on `inputs`, per tensor
    (the values inside WHILE/IF bodies are not recorded): the ranges a model really produces."""
    values = _feed(sg.inputs, inputs)
    with np.errstate(all="ignore"):
        _run(sg, sg.operators, values, {})
    ranges = {}
    for t in sg.tensors:
        v = values.get(id(t))
        if v is None or v.dtype.kind not in "fiu" or not v.size:
            continue
        finite = v[np.isfinite(v)] if v.dtype.kind == "f" else v
        if finite.size:
            ranges[t] = (float(finite.min()), float(finite.max()))
    return ranges
