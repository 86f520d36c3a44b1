"""Build small test models through the IR API (single ops, hand-written loops)."""

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


def single_op(op_type: str, inputs, options=None, n_outputs=1, out_dtype=None, version=1):
    """A model whose main subgraph is one op. `inputs` holds arrays (fed as model inputs),
    `Input` (a quantized model input), `Const`, `Var` or None (an omitted optional operand).
    Output shapes come from the reference interpreter (the runtimes resize outputs anyway);
    out_dtype defaults to the first input's. Returns (model, feeds)."""
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
    outs = [sg.new_tensor(f"output{k}", (), dtype) for k in range(n_outputs)]
    sg.add_op(op_type, operands, outs, options, version=version)
    sg.outputs = list(outs)
    for t, v in zip(outs, evaluate_subgraph(sg, feeds)):
        t.shape = tuple(v.shape)
    for t in outs:
        t.type = tensor_type_of(dtype)
    return model, feeds


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
