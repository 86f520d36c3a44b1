"""Replace ops whose inputs are all constant (and SHAPE/RANK of static tensors) by constants.

Pattern:   an op of every subgraph whose operands are all constant (no variable tensor), or a
           SHAPE or RANK of a tensor whose shape is static (no -1 in shape_signature, rank
           known: freeze-shapes makes them so); batch-None shape code such as
           SHAPE -> STRIDED_SLICE -> PACK -> FILL folds op by op, in graph order.
           Also a constant (of at most `max_bytes`) that a WHILE passes to its cond and body
           and the body hands back unchanged (a loop invariant: the trip count that older
           converters compute from the input's shape and pass in, which the cond compares
           the counters with).
Rewrite:   op(c1, c2, ...) -> the constant the reference interpreter computes for it; the ops
           of cond and body that read such an invariant read a copy of the constant instead
           (the operand itself stays: drop-dead-loop-values removes it when unused).
Kept:      ops with side effects or subgraphs (WHILE, IF, CALL_ONCE, VAR_HANDLE, custom ops);
           ops the interpreter has no kernel for or refuses (quantized operands); ops with a
           quantized output, but for those that copy stored integers (FILL, RESHAPE, ...:
           the constant keeps the output's quantization); ops that write a variable tensor
           or a subgraph output: LiteRT computes a constant-only op once, at Prepare, so
           the variable tensors a fused sequence op updates in place are (re)set by a FILL
           or RESHAPE of constants every invoke (tflgraph.rnn.rewrite) and must never become
           constants themselves;
           DEQUANTIZE and DENSIFY (they keep weights small on purpose; for TFLM,
           float16-weights and densify-weights expand them); and ops
           whose constant would be larger than `max_bytes` (a FILL of a big buffer: the op
           is cheap and the file would grow), unless the target cannot run the op (RANK,
           REDUCE_PROD, TILE fold on TFLM whatever their size).
Proof:     the interpreter's kernels compute what LiteRT computes (tests/test_interpreter.py
           checks each against LiteRT, exactly for integer ops); for SHAPE and RANK the value
           is the shape itself, which freeze-shapes proved static; a WHILE operand the body
           returns as it got it holds its initial value in every iteration.
Invariant: every model output is unchanged (the value of each folded op does not depend on
           the inputs); no variable tensor becomes a constant.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.legalize import replace_by_constants
from tflgraph.pipeline import Option, Pass, has_side_effects, register
from tflgraph.reference.equivalence import can_evaluate
from tflgraph.reference.interpreter import (
    RAW_COPY_OPS,
    EvaluationError,
    UnsupportedOp,
    evaluate_tensors,
)
from tflgraph.runtime.targets import supports

_OF_SHAPE = {"SHAPE", "RANK"}  # their value depends on the operand's shape, not its values
_COMPRESSED = {"DEQUANTIZE", "DENSIFY"}  # they keep weights small on purpose


@register("fold-constants")
class FoldConstants(Pass):
    """Evaluate constant-only ops (SHAPE/RANK of static tensors too) into constants."""

    max_bytes = Option(
        1024,
        "largest constant (bytes) an op the target runs is folded into; ops the target "
        "cannot run fold whatever their size",
    )

    def run(self, model: Model) -> bool:
        folded = 0
        for sg in model.subgraphs:
            for op in list(sg.operators):  # in graph order: a fold makes its readers foldable
                if op in sg and self._foldable(sg, op):
                    folded += self._fold(sg, op)
        forwarded = sum(
            self._forward_invariants(model, op)
            for sg in model.subgraphs
            for op in sg.ops_of_type("WHILE")
        )
        self.stats = {"ops_folded": folded, "loop_invariants_forwarded": forwarded}
        return bool(folded or forwarded)

    def _forward_invariants(self, model: Model, op: Operator) -> int:
        """Let cond and body of WHILE `op` read its constant loop invariants as constants;
        how many operands were forwarded."""
        cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
        if not isinstance(cond, Subgraph) or not isinstance(body, Subgraph):
            return 0
        if len(model.subgraph_users(cond)) != 1 or len(model.subgraph_users(body)) != 1:
            return 0  # another WHILE passes other values at this operand
        forwarded = 0
        for k, t in enumerate(op.inputs):
            if (
                t is None
                or not t.is_constant
                or t.is_variable
                or t.data is None
                or t.buffer.nbytes > self.max_bytes
                or k >= min(len(body.inputs), len(body.outputs), len(cond.inputs))
                or body.outputs[k] is not body.inputs[k]
            ):
                continue
            for s in (cond, body):
                arg = s.inputs[k]
                readers = s.consumers(arg)
                if not readers:
                    continue
                c = s.new_constant(t.data, f"{arg.name}/constant", t.quantization)
                for reader in readers:
                    for i, x in enumerate(reader.inputs):
                        if x is arg:
                            s.set_input(reader, i, c)
                forwarded += 1
        return forwarded

    def _foldable(self, sg: Subgraph, op: Operator) -> bool:
        outputs = [t for t in op.outputs if t is not None]
        if not outputs or op.type in _COMPRESSED or has_side_effects(op) or op.subgraphs():
            return False
        if not can_evaluate(op):
            return False
        if any(t.is_variable or t.dtype is None for t in outputs):
            return False
        if any(t.is_quantized for t in outputs) and op.type not in RAW_COPY_OPS:
            return False
        if any(t is o for t in outputs for o in sg.outputs):
            return False
        operands = [t for t in op.inputs if t is not None]
        if op.type in _OF_SHAPE:
            return all(_static(t) for t in operands)
        return all(t.is_constant and not t.is_variable for t in operands)

    def _fold(self, sg: Subgraph, op: Operator) -> bool:
        outputs = [t for t in op.outputs if t is not None]
        feeds = {}
        if op.type in _OF_SHAPE:  # only the shape is read: any values of that shape do
            feeds = {t: np.zeros(t.shape, t.dtype) for t in op.inputs if t is not None}
        try:
            values = evaluate_tensors(sg, feeds, outputs)
        except (EvaluationError, UnsupportedOp) as e:
            self.explain(f"{op.type} -> {outputs[0].name}: not folded: {e}")
            return False
        size = sum(np.asarray(v).nbytes for v in values)
        if size > self.max_bytes and supports(self.target, op.type):
            self.explain(
                f"{op.type} -> {outputs[0].name}: not folded: {size} bytes > max_bytes "
                f"{self.max_bytes} (the target runs it)"
            )
            return False
        replace_by_constants(sg, outputs, values)
        return True


def _static(t: Tensor) -> bool:
    """The stored shape is the tensor's shape: no -1 in the signature and a known rank."""
    return not t.is_dynamic and (t.has_rank or len(t.shape) > 0)
