"""Remove what nothing needs and share identical constants.

Pattern:   ops whose outputs nobody reads and that have no side effects; tensors no op or
           subgraph input/output uses; subgraphs no reachable op or signature refers to;
           constant buffers with identical bytes; y = REVERSE_V2(REVERSE_V2(x, a), b) with
           constant axes a and b naming the same axes, y of x's type, shape and
           quantization (reroll reverses the sequence of a backward layer, which may itself
           be a REVERSE_V2); y = RESHAPE(z) where z = RESHAPE, EXPAND_DIMS or SQUEEZE of x,
           of x's type and quantization (hoist-input-projection and onnx2tf leave such chains).
Rewrite:   delete them; point tensors with identical constant data at one Buffer; readers of
           y read x (the pair is then dead code; not where y is a subgraph output and x is an
           input or a constant: the output keeps its own tensor); the outer RESHAPE reads x
           (z is then dead code unless something else reads it).
Exact:     reversing along the same axes twice puts every element back where it was: y holds
           x's bytes, bit for bit, whatever the type. A reshape keeps the elements in their
           row-major order, whatever shape it starts from: RESHAPE(x) to y's shape is y.
Invariant: every model output is computed exactly as before (nothing read is removed, and
           shared buffers are never written: passes make new constants instead).
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.writer import BufferTable
from tflgraph.ir import Model, Tensor
from tflgraph.pattern import Any, Const, Op
from tflgraph.pipeline import Pass, register, remove_dead_code

REVERSE_TWICE = Op("REVERSE_V2", Op("REVERSE_V2", Any("x"), Const("a")), Const("b"))


@register("cleanup")
class Cleanup(Pass):
    """Remove dead ops, tensors and subgraphs; dedupe identical constant buffers."""

    def run(self, model: Model) -> bool:
        n_subgraphs = len(model.subgraphs)
        pairs = cancel_reverse_pairs(model)
        reshapes = merge_reshape_chains(model)
        removed = remove_dead_code(model)
        shared = dedupe_buffers(model)
        self.stats = {
            "reverse_pairs_removed": pairs,
            "reshape_chains_merged": reshapes,
            "ops_removed": removed,
            "subgraphs_removed": n_subgraphs - len(model.subgraphs),
            "buffers_shared": shared,
        }
        return bool(removed or shared or n_subgraphs != len(model.subgraphs))


def dedupe_buffers(model: Model) -> int:
    """Point every tensor at the first Buffer with the same bytes (the writer's own dedupe
    table decides what is the same); return how many tensors moved."""
    table = BufferTable()
    moved = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_constant:
                keep = table.owners[table.index(t.buffer)]
                if keep is not t.buffer:
                    t.buffer = keep
                    moved += 1
    return moved


def cancel_reverse_pairs(model: Model) -> int:
    """Point the readers of y = REVERSE_V2(REVERSE_V2(x, a), b) at x where a and b name the
    same axes (see the module docstring); return how many pairs went."""
    cancelled = 0
    for sg in model.subgraphs:
        for op in REVERSE_TWICE.candidates(sg):
            caps = REVERSE_TWICE.match(sg, op) if op in sg else None
            if caps is None:
                continue
            x, y = caps["x"], op.outputs[0]
            axes = _axes(caps["a"], len(x.shape))
            if axes is None or axes != _axes(caps["b"], len(x.shape)) or not _same_kind(x, y):
                continue
            if sg.producer(x) is None and any(t is y for t in sg.outputs):
                continue
            sg.replace_all_uses(y, x, keep_name=True)
            cancelled += 1
    return cancelled


SHAPE_ONLY_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")


def merge_reshape_chains(model: Model) -> int:
    """Make y = RESHAPE(z), z a reshape of x (see the module docstring), read x; return how
    many RESHAPEs now read one op earlier."""
    merged = 0
    for sg in model.subgraphs:
        for op in sg.ops_of_type("RESHAPE"):
            z = op.inputs[0]
            inner = sg.producer(z)
            if inner is None or inner.type not in SHAPE_ONLY_OPS or len(inner.outputs) != 1:
                continue
            x = inner.inputs[0]
            if x is None or x.type != z.type or not _same_quantization(x, z):
                continue
            sg.set_input(op, 0, x)
            merged += 1
    return merged


def _axes(t: Tensor, rank: int) -> set[int] | None:
    """The axes a constant REVERSE_V2 axis operand names (negative ones counted from the
    end), or None if one is out of range."""
    axes = np.asarray(t.data).reshape(-1)
    if rank == 0 or np.any(axes < -rank) or np.any(axes >= rank):
        return None
    return {int(a) % rank for a in axes}


def _same_kind(x: Tensor, y: Tensor) -> bool:
    """x can stand for y: the same type, static shape, shape signature and quantization."""
    return (x.type, tuple(x.shape), tuple(x.shape_signature or x.shape)) == (
        y.type,
        tuple(y.shape),
        tuple(y.shape_signature or y.shape),
    ) and _same_quantization(x, y)


def _same_quantization(x: Tensor, y: Tensor) -> bool:
    qx, qy = x.quantization or {}, y.quantization or {}
    return qx.keys() == qy.keys() and all(np.array_equal(qx[k], qy[k]) for k in qx)
