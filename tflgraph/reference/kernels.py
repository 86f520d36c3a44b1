"""Numpy kernels of TFLite builtin ops, float semantics, one row per op in `KERNELS`.

A kernel is `fn(op, *inputs) -> array | tuple[array, ...]`: `op` gives the options and the
output tensors, `inputs` are numpy arrays in operand order (`None` for an optional -1). Kernels
never write into their inputs (constants are read-only views of the file).

Dense, convolution, pooling and recurrent kernels live in kernels_nn.py; control flow (WHILE)
lives in interpreter.py, which calls back into subgraph evaluation.
"""

from __future__ import annotations

import math

import numpy as np

from tflgraph.errors import TflgraphError


class UnsupportedOp(TflgraphError):
    """The reference interpreter has no kernel for this op (or this variant of it)."""


# ---------------------------------------------------------------- activations

ACTIVATIONS = {  # fused activation (Operator.activation) -> function; NaN stays NaN
    "NONE": lambda x: x,
    "RELU": lambda x: np.maximum(x, 0).astype(x.dtype),
    "RELU_N1_TO_1": lambda x: np.clip(x, -1, 1).astype(x.dtype),
    "RELU6": lambda x: np.clip(x, 0, 6).astype(x.dtype),
    "TANH": np.tanh,
    "SIGN_BIT": lambda x: np.signbit(x).astype(x.dtype),
}
# What LiteRT applies after ADD, MUL, FULLY_CONNECTED, convolutions and pooling: it ignores
# TANH/SIGN_BIT on ADD/MUL and refuses them on FULLY_CONNECTED.
CLAMPING = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")


def act(op, x: np.ndarray) -> np.ndarray:
    """Apply the op's fused activation as LiteRT's clamping ops do (others are refused)."""
    if op.activation not in CLAMPING:
        raise UnsupportedOp(f"{op.type} with fused activation {op.activation}")
    return ACTIVATIONS[op.activation](x)


def sigmoid(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88 gives the right 0
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _vector(op, name: str) -> list[int] | None:
    """A vector option field as ints, None when absent."""
    v = op.option(name)
    return None if v is None else as_ints(v)


def as_ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _axis(x, rank: int) -> int:
    a = int(np.asarray(x).reshape(-1)[0])
    return a + rank if a < 0 else a


# ---------------------------------------------------------------- shapes and slicing


def reshape(op, x, shape=None):
    if shape is not None:
        new = as_ints(shape)
    elif _vector(op, "new_shape") is not None:
        new = _vector(op, "new_shape")
    else:
        new = list(op.outputs[0].shape)
    return x.reshape(new)


def squeeze(op, x):
    dims = _vector(op, "squeeze_dims")
    if not dims:
        return x.reshape([d for d in x.shape if d != 1])
    return np.squeeze(x, tuple(_axis(d, x.ndim) for d in dims))


def split(op, axis, x):
    return tuple(np.split(x, op.option("num_splits"), _axis(axis, x.ndim)))


def split_v(op, x, sizes, axis):
    ax = _axis(axis, x.ndim)
    sizes = as_ints(sizes)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[ax] - (sum(sizes) + 1)
    return tuple(np.split(x, np.cumsum(sizes)[:-1], ax))


def slice_(op, x, begin, size):
    idx = tuple(
        slice(b, x.shape[d] if s == -1 else b + s)
        for d, (b, s) in enumerate(zip(as_ints(begin), as_ints(size)))
    )
    return x[idx]


def strided_slice(op, x, begin, end, strides):
    index = []
    for k, (b, e, s) in enumerate(zip(as_ints(begin), as_ints(end), as_ints(strides))):
        bit = 1 << k
        if op.option("ellipsis_mask", 0) & bit:
            index.append(Ellipsis)
        elif op.option("new_axis_mask", 0) & bit:
            index.append(np.newaxis)
        elif op.option("shrink_axis_mask", 0) & bit:
            index.append(b)
        else:
            if op.option("offset"):
                e = b + e
            index.append(
                slice(
                    None if op.option("begin_mask", 0) & bit else b,
                    None if op.option("end_mask", 0) & bit else e,
                    s,
                )
            )
    return np.asarray(x[tuple(index)])


def gather(op, params, indices):
    bd = op.option("batch_dims", 0)
    bd = bd + indices.ndim if bd < 0 else bd
    ax = _axis(op.option("axis", 0), params.ndim)
    if bd == 0:
        return np.take(params, indices, axis=ax)
    n = int(np.prod(params.shape[:bd]))
    p = params.reshape((n,) + params.shape[bd:])
    i = indices.reshape((n,) + indices.shape[bd:])
    out = np.stack([np.take(p[k], i[k], axis=ax - bd) for k in range(n)])
    return out.reshape(params.shape[:bd] + out.shape[1:])


def _reduce(fn, typed=False):
    def kernel(op, x, axes):
        axes = tuple(sorted({_axis(a, x.ndim) for a in as_ints(axes)}))
        kw = {"keepdims": bool(op.option("keep_dims"))}
        if typed:  # np.sum/prod/mean would widen int32 to int64
            kw["dtype"] = x.dtype
        return np.asarray(fn(x, axis=axes, **kw))

    return kernel


def _reduce_mean(x, axis, keepdims, dtype):
    if np.issubdtype(dtype, np.integer):  # LiteRT: integer sum / count, truncated
        total = np.sum(x, axis=axis, keepdims=keepdims, dtype=np.int64)
        n = x.size // max(total.size, 1)
        return (np.sign(total) * (np.abs(total) // n)).astype(dtype)
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=dtype)


def pad(op, x, paddings, value=None):
    fill = 0 if value is None else np.asarray(value).reshape(-1)[0]
    return np.pad(x, np.asarray(paddings).reshape(-1, 2).tolist(), constant_values=fill)


def concatenation(op, *xs):
    if op.activation != "NONE":  # LiteRT ignores it: refuse to guess
        raise UnsupportedOp(f"{op.type} with a fused activation")
    return np.concatenate(xs, _axis(op.option("axis", 0), xs[0].ndim))


def dynamic_update_slice(op, x, update, start):
    out = np.array(x)
    start = np.clip(as_ints(start), 0, np.subtract(x.shape, update.shape))
    out[tuple(slice(s, s + n) for s, n in zip(start, update.shape))] = update
    return out


def select(op, cond, x, y):
    if op.type == "SELECT" and cond.ndim == 1 and x.ndim > 1:  # a vector condition picks rows
        cond = cond.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(cond, x, y)


def softmax(op, x):
    z = x * op.option("beta", 1.0)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def log_softmax(op, x):
    z = x - x.max(axis=-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(x.dtype)


def gelu(op, x):
    if op.option("approximate"):
        inner = np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)
    erf = np.frompyfunc(math.erf, 1, 1)
    return (0.5 * x * (1 + erf(x.astype(np.float64) / math.sqrt(2)))).astype(x.dtype)


def l2_normalization(op, x):
    norm = np.sqrt(np.sum(np.square(x), axis=-1, keepdims=True))
    return act(op, (x / np.maximum(norm, np.float32(1e-6))).astype(x.dtype))


def cumsum(op, x, axis):
    ax = _axis(axis, x.ndim)
    y = np.flip(x, ax) if op.option("reverse") else x
    y = np.cumsum(y, axis=ax, dtype=x.dtype)
    if op.option("exclusive"):
        y = y - (np.flip(x, ax) if op.option("reverse") else x)
    return np.flip(y, ax) if op.option("reverse") else y


def arg_reduce(fn):
    return lambda op, x, axis: fn(x, axis=_axis(axis, x.ndim)).astype(op.outputs[0].dtype)


def dequantize(op, x):
    if x.dtype == np.float16:
        return x.astype(np.float32)
    return dequantize_array(x, op.inputs[0].quantization or {})


def dequantize_array(x: np.ndarray, q: dict) -> np.ndarray:
    """(x - zero_point) * scale as float32, per channel along quantized_dimension when `q`
    (QuantizationParameters) holds several scales."""
    scale, zp = np.asarray(q.get("scale", [1.0])), np.asarray(q.get("zero_point", [0]))
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[q.get("quantized_dimension", 0)] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x.astype(np.float32) - zp) * scale).astype(np.float32)


def sparse_to_dense(values: np.ndarray, shape, sparsity: dict) -> np.ndarray:
    """Decode a TFLite sparse tensor (SparsityParameters: traversal order, block map,
    DENSE / SPARSE_CSR dim metadata) into a dense array of `shape`."""
    order, block_map = as_ints(sparsity["traversal_order"]), as_ints(sparsity.get("block_map", []))
    pos, idx = np.zeros(1, np.int64), []  # per stored entry: position at this level, indices
    for meta in sparsity["dim_metadata"]:
        if meta.get("format", 0) == 0:  # DENSE
            n = meta["dense_size"]
            idx = [np.repeat(i, n) for i in idx] + [np.tile(np.arange(n), len(pos))]
            pos = (pos[:, None] * n + np.arange(n)).reshape(-1)
        else:  # SPARSE_CSR: children of parent p are entries segments[p]..segments[p+1]
            seg = np.asarray(meta["array_segments"]["values"], np.int64)
            ind = np.asarray(meta["array_indices"]["values"], np.int64)
            counts = seg[pos + 1] - seg[pos]
            pos = np.concatenate([np.arange(seg[p], seg[p + 1]) for p in pos] or [pos[:0]])
            idx = [np.repeat(i, counts) for i in idx] + [ind[pos]]
    expanded = dict(zip(order, idx))
    coords = [expanded[d] for d in range(len(shape))]
    for k, d in enumerate(block_map):  # blocked dim d: block index * block size + offset
        offset = expanded[len(shape) + k]
        coords[d] = (
            coords[d] * sparsity["dim_metadata"][order.index(len(shape) + k)]["dense_size"] + offset
        )
    dense = np.zeros(shape, values.dtype)
    dense[tuple(coords)] = values[: len(coords[0])]
    return dense


def _binary(fn):
    return lambda op, a, b: act(op, np.asarray(fn(a, b)))


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return a / b


def _unary(fn):
    return lambda op, x: np.asarray(fn(x)).astype(x.dtype)


# ---------------------------------------------------------------- the table

KERNELS = {
    "ADD": _binary(np.add),
    "SUB": _binary(np.subtract),
    "MUL": _binary(np.multiply),
    "DIV": _binary(_div),
    "MAXIMUM": lambda op, a, b: np.maximum(a, b),
    "MINIMUM": lambda op, a, b: np.minimum(a, b),
    "SQUARED_DIFFERENCE": lambda op, a, b: np.square(a - b),
    "LOGISTIC": lambda op, x: sigmoid(x),
    "TANH": lambda op, x: np.tanh(x),
    "RELU": lambda op, x: ACTIVATIONS["RELU"](x),
    "RELU_N1_TO_1": lambda op, x: ACTIVATIONS["RELU_N1_TO_1"](x),
    "RELU6": lambda op, x: ACTIVATIONS["RELU6"](x),
    "HARD_SWISH": lambda op, x: (x * np.clip(x + 3, 0, 6) / 6).astype(x.dtype),
    "EXP": _unary(np.exp),
    "LOG": _unary(np.log),
    "SIN": _unary(np.sin),
    "COS": _unary(np.cos),
    "FLOOR": _unary(np.floor),
    "CEIL": _unary(np.ceil),
    "ABS": _unary(np.abs),
    "NEG": _unary(np.negative),
    "SQUARE": _unary(np.square),
    "SQRT": _unary(np.sqrt),
    "RSQRT": _unary(lambda x: 1 / np.sqrt(x)),
    "SOFTMAX": softmax,
    "L2_NORMALIZATION": l2_normalization,
    "CUMSUM": cumsum,
    "ELU": lambda op, x: np.where(x > 0, x, np.expm1(x)).astype(x.dtype),
    "SIGN": _unary(np.sign),
    "ROUND": _unary(np.round),
    "LOG_SOFTMAX": log_softmax,
    "GELU": gelu,
    "LEAKY_RELU": lambda op, x: np.where(x > 0, x, x * op.option("alpha", 0.0)).astype(x.dtype),
    "PRELU": lambda op, x, alpha: np.where(x >= 0, x, x * alpha).astype(x.dtype),
    "POW": lambda op, a, b: np.power(a, b),
    "FLOOR_DIV": lambda op, a, b: np.floor_divide(a, b),
    "FLOOR_MOD": lambda op, a, b: np.mod(a, b),
    "ARG_MAX": arg_reduce(np.argmax),
    "ARG_MIN": arg_reduce(np.argmin),
    "RESHAPE": reshape,
    "SQUEEZE": squeeze,
    "EXPAND_DIMS": lambda op, x, axis: np.expand_dims(x, _axis(axis, x.ndim + 1)),
    "TRANSPOSE": lambda op, x, perm: np.transpose(x, as_ints(perm)),
    "CONCATENATION": concatenation,
    "SPLIT": split,
    "SPLIT_V": split_v,
    "SLICE": slice_,
    "STRIDED_SLICE": strided_slice,
    "GATHER": gather,
    "PACK": lambda op, *xs: np.stack(xs, _axis(op.option("axis", 0), xs[0].ndim + 1)),
    "UNPACK": lambda op, x: tuple(
        np.take(x, k, _axis(op.option("axis", 0), x.ndim))
        for k in range(x.shape[_axis(op.option("axis", 0), x.ndim)])
    ),
    "REVERSE_V2": lambda op, x, axes: np.flip(x, tuple(_axis(a, x.ndim) for a in as_ints(axes))),
    "MEAN": _reduce(_reduce_mean, typed=True),
    "SUM": _reduce(np.sum, typed=True),
    "REDUCE_PROD": _reduce(np.prod, typed=True),
    "REDUCE_MAX": _reduce(np.max),
    "REDUCE_MIN": _reduce(np.min),
    "REDUCE_ANY": _reduce(np.any),
    "PAD": pad,
    "MIRROR_PAD": lambda op, x, paddings: np.pad(
        x,
        np.asarray(paddings).reshape(-1, 2).tolist(),
        mode=("reflect", "symmetric")[op.option("mode", 0)],
    ),
    "TILE": lambda op, x, multiples: np.tile(x, as_ints(multiples)),
    "BROADCAST_TO": lambda op, x, shape: np.array(np.broadcast_to(x, as_ints(shape))),
    "RANGE": lambda op, start, limit, delta: np.arange(start, limit, delta, dtype=start.dtype),
    "PADV2": pad,
    "FILL": lambda op, dims, value: np.full(as_ints(dims), value.reshape(-1)[0], value.dtype),
    "ZEROS_LIKE": lambda op, x: np.zeros_like(x),
    "SHAPE": lambda op, x: np.array(x.shape, op.outputs[0].dtype or np.int32),
    "RANK": lambda op, x: np.array(x.ndim, op.outputs[0].dtype or np.int32),
    "CAST": lambda op, x: x.astype(op.outputs[0].dtype),
    "DEQUANTIZE": dequantize,
    "DENSIFY": lambda op, x: x,  # the evaluator decodes the sparse constant
    "LESS": lambda op, a, b: np.less(a, b),
    "LESS_EQUAL": lambda op, a, b: np.less_equal(a, b),
    "GREATER": lambda op, a, b: np.greater(a, b),
    "GREATER_EQUAL": lambda op, a, b: np.greater_equal(a, b),
    "EQUAL": lambda op, a, b: np.equal(a, b),
    "NOT_EQUAL": lambda op, a, b: np.not_equal(a, b),
    "LOGICAL_AND": lambda op, a, b: np.logical_and(a, b),
    "LOGICAL_OR": lambda op, a, b: np.logical_or(a, b),
    "LOGICAL_NOT": lambda op, x: np.logical_not(x),
    "SELECT": select,
    "SELECT_V2": select,
    "DYNAMIC_UPDATE_SLICE": dynamic_update_slice,
}
