"""Build small test models through the IR API: single ops, block-sparse weights, the FC -> MUL
graph of the pattern tests, the float graphs of the channel tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tflgraph import Model, new_options
from tflgraph.io.schema import tensor_type_of
from tflgraph.reference.interpreter import evaluate_subgraph


@dataclass
class Const:
    """An operand stored as a constant in the model."""

    value: np.ndarray
    quantization: dict | None = None


@dataclass
class Input:
    """A model input with quantization parameters (plain arrays are unquantized inputs)."""

    value: np.ndarray
    quantization: dict | None = None


@dataclass
class Var:
    """A variable tensor operand (zero at allocation, kept across invokes)."""

    shape: tuple
    dtype: str = "float32"


def single_op(
    op_type: str,
    inputs,
    options=None,
    n_outputs=1,
    out_dtype=None,
    version=1,
    out_quantization=None,
):
    """A model whose main subgraph is one op. `inputs` holds arrays (fed as model inputs),
    `Input` (a quantized model input), `Const`, `Var` or None (an omitted optional operand).
    Output shapes come from the reference interpreter (the runtimes resize outputs anyway);
    out_dtype defaults to the first input's; out_quantization quantizes the outputs.
    Returns (model, feeds)."""
    model = Model()
    sg = model.add_subgraph("main")
    feeds, operands = [], []
    for k, x in enumerate(inputs):
        if x is None:
            operands.append(None)
        elif isinstance(x, Const):
            operands.append(sg.new_constant(np.asarray(x.value), f"const{k}", x.quantization))
        elif isinstance(x, Var):
            operands.append(sg.new_tensor(f"var{k}", x.shape, x.dtype, is_variable=True))
        else:
            q = x.quantization if isinstance(x, Input) else None
            x = np.asarray(x.value if isinstance(x, Input) else x)
            t = sg.new_tensor(f"input{k}", x.shape, x.dtype, quantization=q)
            sg.inputs.append(t)
            feeds.append(x)
            operands.append(t)
    dtype = np.dtype(out_dtype or _dtype(next(x for x in inputs if x is not None)))
    outs = [
        sg.new_tensor(f"output{k}", (), dtype, quantization=out_quantization)
        for k in range(n_outputs)
    ]
    sg.add_op(op_type, operands, outs, options, version=version)
    sg.outputs = list(outs)
    for t, v in zip(outs, evaluate_subgraph(sg, feeds)):
        t.shape = tuple(v.shape)
    for t in outs:
        t.type = tensor_type_of(dtype)
    return model, feeds


def bidi_lstm_operands(rng, F=3, units=4, batch=2, peepholes=False) -> list:
    """The 47 operands of BIDIRECTIONAL_SEQUENCE_LSTM after its input, for `single_op`: per
    direction the gate weights [units, F], recurrent weights, (peepholes,) biases, then the
    four variable states [batch, units], no aux input."""

    def direction():
        w = [Const(rng.uniform(-1, 1, (units, F)).astype(np.float32)) for _ in range(4)]
        w += [Const(rng.uniform(-1, 1, (units, units)).astype(np.float32)) for _ in range(4)]
        w += [Const(rng.uniform(-1, 1, units).astype(np.float32)) if peepholes else None] * 3
        w += [Const(rng.uniform(-1, 1, units).astype(np.float32)) for _ in range(4)]
        return w + [None, None]

    states = [Var((batch, units)) for _ in range(4)]
    return [*direction(), *direction(), *states, *[None] * 9]


def _dtype(x) -> np.dtype:
    if isinstance(x, (Const, Input)):
        return np.asarray(x.value).dtype
    if isinstance(x, Var):
        return np.dtype(x.dtype)
    return np.asarray(x).dtype


def block_sparse(dense: np.ndarray, block: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """(stored values, SparsityParameters) of a 2-D matrix in block-CSR form: dims
    [rows/bh dense, cols/bw CSR, bh dense, bw dense], block_map [0, 1]; all-zero blocks dropped."""
    (bh, bw), (h, w) = block, dense.shape
    blocks = dense.reshape(h // bh, bh, w // bw, bw).transpose(0, 2, 1, 3)
    segments, indices, values = [0], [], []
    for r in range(h // bh):
        for c in range(w // bw):
            if np.any(blocks[r, c]):
                indices.append(c)
                values.append(blocks[r, c].reshape(-1))
        segments.append(len(indices))

    def vec(v):
        return new_options("Int32Vector", values=np.array(v, np.int32))

    csr = {"format": 1, "array_segments_type": 1, "array_segments": vec(segments)}
    csr.update(array_indices_type=1, array_indices=vec(indices))
    meta = [{"format": 0, "dense_size": h // bh}, csr]
    meta += [{"format": 0, "dense_size": bh}, {"format": 0, "dense_size": bw}]
    sparsity = {"traversal_order": np.arange(4, dtype=np.int32), "dim_metadata": meta}
    sparsity["block_map"] = np.array([0, 1], np.int32)
    return np.concatenate(values).astype(dense.dtype), sparsity


# the pattern and plugin tests' FC -> MUL graph; one seeded stream for all its weights
RNG = np.random.default_rng(7)


def densify_add_model(dense: np.ndarray, block: tuple[int, int]) -> Model:
    """x + DENSIFY(w), with w the block-sparse form of `dense` (see block_sparse)."""
    values, sparsity = block_sparse(dense, block)
    model = Model()
    sg = model.add_subgraph("main")
    w = sg.new_constant(values, "w")
    w.shape, w.sparsity = dense.shape, sparsity
    wd, x, y = (sg.new_tensor(n, dense.shape) for n in ("wd", "x", "y"))
    sg.add_op("DENSIFY", [w], [wd])
    sg.add_op("ADD", [x, wd], [y], {})
    sg.inputs, sg.outputs = [x], [y]
    return model


def fc_mul_model(act=0, scale_shape=(4,), second_use=False, scale_first=False, scale=None):
    """x[2, 8] -> FULLY_CONNECTED(W[4, 8], b[4], activation act) -> MUL by s -> y; s is
    random in [0.5, 2) unless `scale` gives its value."""
    batch = 2
    m = Model()
    sg = m.add_subgraph("main")
    x = sg.new_tensor("x", (batch, 8))
    w = sg.new_constant(RNG.normal(size=(4, 8)).astype(np.float32), "w")
    b = sg.new_constant(RNG.normal(size=(4,)).astype(np.float32), "b")
    h = sg.new_tensor("h", (batch, 4))
    sg.add_op("FULLY_CONNECTED", [x, w, b], [h], options={"fused_activation_function": act})
    s_value = RNG.uniform(0.5, 2.0, size=scale_shape) if scale is None else scale
    s = sg.new_constant(np.broadcast_to(s_value, scale_shape).astype(np.float32), "s")
    y = sg.new_tensor("y", np.broadcast_shapes((batch, 4), scale_shape))
    sg.add_op("MUL", [s, h] if scale_first else [h, s], [y], options={})
    sg.inputs = [x]
    sg.outputs = [y, h] if second_use else [y]
    return m


SAME, VALID = 0, 1


class G:
    """A tiny graph builder: float tensors with explicit shapes."""

    def __init__(self, *input_shapes):
        self.m = Model()
        self.sg = self.m.add_subgraph("main")
        self.inputs = [self.sg.new_tensor(f"x{i}", s) for i, s in enumerate(input_shapes)]
        self.sg.inputs = list(self.inputs)

    def const(self, a, dtype=np.float32):
        return self.sg.new_constant(np.asarray(a, dtype), "w")

    def op(self, kind, inputs, shape, options=None):
        y = self.sg.new_tensor(kind.lower(), shape)
        self.sg.add_op(kind, inputs, [y], options)
        return y

    def fc(self, x, w, b=None, act=0):
        w = np.asarray(w, np.float32)
        ins = [x, self.const(w), None if b is None else self.const(b)]
        opts = {"fused_activation_function": act}
        return self.op("FULLY_CONNECTED", ins, (x.shape[0], w.shape[0]), opts)

    def conv(self, x, w, b, padding=SAME, act=0):
        k = w.shape[1]
        h = x.shape[1] if padding == SAME else x.shape[1] - k + 1
        opts = {"padding": padding, "stride_w": 1, "stride_h": 1, "fused_activation_function": act}
        shape = (1, h, h, w.shape[0])
        return self.op("CONV_2D", [x, self.const(w), self.const(b)], shape, opts)

    def done(self, *outs):
        self.sg.outputs = list(outs)
        self.m.check()
        return self.m


def gated_cell_model(seed: int = 0) -> Model:
    """The ops recurrent cells are made of, outside a loop: x[1, 8] -> z = LOGISTIC(FC), c =
    TANH(FC), y = z * c + (1 - z) * x[:, :4] (MUL, SUB from a constant, ADD, STRIDED_SLICE),
    CONCATENATION([y, z, c]) -> RESHAPE [3, 4]."""
    rng = np.random.default_rng(seed)
    g = G((1, 8))
    (x,) = g.inputs
    z = g.op("LOGISTIC", [g.fc(x, rng.normal(size=(4, 8)), rng.normal(size=4))], (1, 4))
    c = g.op("TANH", [g.fc(x, rng.normal(size=(4, 8)), rng.normal(size=4))], (1, 4))
    begin, end = g.const([0, 0], np.int32), g.const([1, 4], np.int32)
    x4 = g.op("STRIDED_SLICE", [x, begin, end, g.const([1, 1], np.int32)], (1, 4), {})
    keep = g.op("SUB", [g.const(np.ones((1, 4))), z], (1, 4), {})
    y = g.op(
        "ADD", [g.op("MUL", [z, c], (1, 4), {}), g.op("MUL", [keep, x4], (1, 4), {})], (1, 4), {}
    )
    cat = g.op("CONCATENATION", [y, z, c], (1, 12), {"axis": 1})
    out = g.op("RESHAPE", [cat, g.const([3, 4], np.int32)], (3, 4), {"new_shape": [3, 4]})
    return g.done(out)


def dense_model(w: np.ndarray, b: np.ndarray) -> Model:
    """x[1, in] -> FULLY_CONNECTED(w[out, in], b[out]) -> y."""
    g = G((1, w.shape[1]))
    return g.done(g.fc(g.inputs[0], w, b))
