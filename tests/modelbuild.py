"""Build small test models through the IR API (single ops, hand-written loops)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tflgraph import Model
from tflgraph.interpreter import evaluate_subgraph
from tflgraph.schema import tensor_type_of


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
