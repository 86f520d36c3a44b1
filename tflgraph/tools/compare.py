"""Field-by-field comparison of two models: `model_diff(a, b)` lists every difference.

Tensors are compared through where they are used (subgraph inputs/outputs, op operands), so
two files that differ only in tensor/buffer numbering or in unused entries compare equal;
everything the schema carries about a used tensor, op, subgraph or the model is compared.
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.schema import Options, RawTable
from tflgraph.ir import Buffer, Model, Operator, Subgraph, Tensor

_TENSOR_FIELDS = (
    "name",
    "type",
    "shape",
    "shape_signature",
    "quantization",
    "is_variable",
    "sparsity",
    "has_rank",
    "variant_tensors",
    "unknown_fields",
)


def model_diff(a: Model, b: Model, limit: int = 20) -> list[str]:
    """Differences between two models (empty when equal field by field)."""
    out: list[str] = []
    sa, sb = a.reachable_subgraphs(), b.reachable_subgraphs()
    index_a = {sg: i for i, sg in enumerate(sa)}
    index_b = {sg: i for i, sg in enumerate(sb)}

    def same(x, y) -> bool:
        if isinstance(x, Subgraph) or isinstance(y, Subgraph):
            return index_a.get(x, -1) == index_b.get(y, -2)
        if isinstance(x, Buffer) or isinstance(y, Buffer):
            return same(getattr(x, "data", None), getattr(y, "data", None))
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return (
                x is not None
                and y is not None
                and np.asarray(x).shape == np.asarray(y).shape
                and np.array_equal(np.asarray(x), np.asarray(y))
            )
        if isinstance(x, Options) and isinstance(y, Options):
            full_x, full_y = x.full(), y.full()
            return x.kind == y.kind and all(same(full_x[k], full_y[k]) for k in full_x)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
        if isinstance(x, RawTable) or isinstance(y, RawTable):
            return x == y
        return x == y

    def check(where: str, x, y) -> None:
        if len(out) < limit and not same(x, y):
            out.append(f"{where}: {_short(x)} != {_short(y)}")

    def tensor(where: str, x: Tensor | None, y: Tensor | None) -> None:
        if x is None or y is None:
            check(where, x, y)
            return
        for f in _TENSOR_FIELDS:
            check(f"{where}.{f}", getattr(x, f), getattr(y, f))
        check(
            f"{where}.data",
            x.buffer.data if x.is_constant else None,
            y.buffer.data if y.is_constant else None,
        )

    def tensors(where: str, xs, ys) -> None:
        check(f"{where} count", len(xs), len(ys))
        for i, (x, y) in enumerate(zip(xs, ys)):
            tensor(f"{where}[{i}]", x, y)

    def op(where: str, x: Operator, y: Operator) -> None:
        for f in (
            "type",
            "version",
            "options",
            "options2",
            "custom_options",
            "custom_options_format",
            "mutating_variable_inputs",
            "debug_metadata_index",
            "unknown_fields",
            "code_unknown_fields",
        ):
            check(f"{where}.{f}", getattr(x, f), getattr(y, f))
        tensors(f"{where}.inputs", x.inputs, y.inputs)
        tensors(f"{where}.outputs", x.outputs, y.outputs)
        tensors(f"{where}.intermediates", x.intermediates, y.intermediates)

    check("version", a.version, b.version)
    check("description", a.description, b.description)
    check("unknown_fields", a.unknown_fields, b.unknown_fields)
    check("subgraph count", len(sa), len(sb))
    for i, (x, y) in enumerate(zip(sa, sb)):
        where = f"subgraph {i}"
        check(f"{where}.name", x.name, y.name)
        check(f"{where}.debug_metadata_index", x.debug_metadata_index, y.debug_metadata_index)
        check(f"{where}.unknown_fields", x.unknown_fields, y.unknown_fields)
        tensors(f"{where}.inputs", x.inputs, y.inputs)
        tensors(f"{where}.outputs", x.outputs, y.outputs)
        ox, oy = x.operators, y.operators
        check(f"{where} op count", len(ox), len(oy))
        for k, (p, q) in enumerate(zip(ox, oy)):
            op(f"{where} op {k} ({p.type})", p, q)
    check("metadata names", [n for n, _ in a.metadata], [n for n, _ in b.metadata])
    for (name, x), (_, y) in zip(a.metadata, b.metadata):
        check(f"metadata {name}", x, y)
    check("metadata_buffers", a.metadata_buffers, b.metadata_buffers)
    check("signature count", len(a.signature_defs), len(b.signature_defs))
    for x, y in zip(a.signature_defs, b.signature_defs):
        where = f"signature {x.key!r}"
        check(f"{where}.key", x.key, y.key)
        check(f"{where}.subgraph", x.subgraph, y.subgraph)
        check(f"{where}.unknown_fields", x.unknown_fields, y.unknown_fields)
        for side in ("inputs", "outputs"):
            xs, ys = getattr(x, side), getattr(y, side)
            check(f"{where}.{side} names", [n for n, _ in xs], [n for n, _ in ys])
            tensors(f"{where}.{side}", [t for _, t in xs], [t for _, t in ys])
    return out


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    text = repr(v)
    return text if len(text) < 80 else text[:77] + "..."
