"""What the --target tflm legalization passes share: replacing an op by the constants the
reference interpreter computes for it, and the weight-size cost of decompressing weights.

TFLM lacks DENSIFY and DEQUANTIZE of float16, and has no hybrid (int8-weight,
float-activation) kernels; LiteRT runs all three well. So these rewrites run only when the
result must run on TFLM (`--target tflm`, or `any`: both runtimes), and `--target litert`
keeps the small weights.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass
from tflgraph.reference.interpreter import EvaluationError, UnsupportedOp, evaluate_tensors


def needs_tflm(target: str) -> bool:
    """True if the rewritten model must run on TFLM ('tflm', or 'any': both runtimes)."""
    return target != "litert"


def replace_by_constants(sg: Subgraph, outputs: list[Tensor], values) -> None:
    """Every reader of each output reads a new constant holding its value instead; the
    constant takes the output's name (so model outputs and names readers know stay) and,
    for a quantized output, its quantization (`values` are then the stored integers)."""
    for t, v in zip(outputs, values):
        quantization = t.quantization if t.is_quantized else None
        const = sg.new_constant(np.asarray(v, t.dtype), t.name, quantization=quantization)
        sg.replace_all_uses(t, const)
        t.name, const.name = const.name, t.name


class RewriteForTflm(Pass):
    """Base of the passes that rewrite each op of `op_type` into ops TFLM has, when the result
    must run on TFLM; with `--target litert` they explain `kept` ("runs POW") and change
    nothing. Subclasses set `op_type` and `kept` and implement `_rewrite`; stats count the
    rewritten ops."""

    op_type = ""
    kept = ""

    def run(self, model: Model) -> bool:
        if not needs_tflm(self.target):
            self.explain(f"target {self.target} {self.kept}: left alone")
            return False
        rewritten = 0
        for sg in model.subgraphs:
            for op in list(sg.ops_of_type(self.op_type)):
                rewritten += self._rewrite(sg, op)
        self.stats = {"rewritten": rewritten}
        return bool(rewritten)

    @abstractmethod
    def _rewrite(self, sg: Subgraph, op: Operator) -> bool:
        """Rewrite one op (explaining a refusal); True if it was rewritten."""


class DecompressWeights(Pass):
    """Base of the passes that turn a constant-only op TFLM cannot run (`op_type`, with a
    constant operand `compressed` accepts) into the plain constant it computes. Subclasses set
    `op_type`, `compressed` and `what` (how the stats name the weights)."""

    op_type = ""
    what = ""

    @abstractmethod
    def compressed(self, t: Tensor) -> bool:
        """True if the constant operand `t` is in the compressed form this pass expands."""

    def run(self, model: Model) -> bool:
        self.stats = {"ops": 0, "bytes_before": 0, "bytes_after": 0}
        if not needs_tflm(self.target):
            self.explain(f"target {self.target} runs {self.op_type}: the weights stay compressed")
            return False
        for sg in model.subgraphs:
            for op in list(sg.ops_of_type(self.op_type)):
                self._decompress(sg, op)
        return bool(self.stats["ops"])

    def _decompress(self, sg: Subgraph, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        if not (x is not None and x.is_constant and not x.is_variable and self.compressed(x)):
            self.explain(f"{self.op_type} -> {out.name}: operand is not {self.what}")
            return
        try:
            (value,) = evaluate_tensors(sg, {}, [out])
        except (EvaluationError, UnsupportedOp) as e:
            self.explain(f"{self.op_type} -> {out.name}: not decompressed: {e}")
            return
        self.stats["ops"] += 1
        self.stats["bytes_before"] += x.buffer.nbytes
        self.stats["bytes_after"] += np.asarray(value, out.dtype).nbytes
        replace_by_constants(sg, [out], [value])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """The size cost, for the optimize summary."""
        before, after = stats.get("bytes_before", 0), stats.get("bytes_after", 0)
        return [
            f"{stats.get('ops', 0)} weight tensor(s) decompressed for TFLM: "
            f"{before:,} -> {after:,} bytes ({after - before:+,})"
        ]
