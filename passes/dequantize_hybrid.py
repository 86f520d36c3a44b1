"""Give hybrid layers (int8 weights, float activations) float32 weights, for TFLM, which has
no hybrid kernels ("Input type: FLOAT32 with filter type: INT8 not supported").

Pattern:   FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D or UNIDIRECTIONAL_SEQUENCE_LSTM whose
           input is float32 and some of whose weight operands are int8 constants with a
           scale (the converter's dynamic-range quantization), in any subgraph.
Rewrite:   each such operand w -> a float32 constant (w - zero_point) * scale (per channel
           along quantized_dimension when the scale is a vector); the op is then a float op,
           which the passes after it treat as any float layer (a hybrid LSTM loop fuses).
Values:    the float layer computes exactly what the hybrid layer stands for: the model with
           the dequantized weights (the weights are the only thing dynamic-range quantization
           changed). LiteRT's hybrid kernels approximate that: they quantize the float input
           to int8 on the fly (per row, asymmetric when asymmetric_quantize_inputs) and
           multiply integers, adding the input's quantization error (up to max|x| / 254 per
           element, times the weights). The result therefore differs from the hybrid
           original in LiteRT by that error (0.2-0.6% of max|y| on the converter fixtures),
           far above tflgraph's bound of 1e-5, and is closer to the float model the user
           trained (tests/passes/test_dequantize_hybrid.py measures both).
Checked:   `optimize` compares its result, in LiteRT and TFLM at the usual bound, with the
           original whose hybrid layers have their dequantized weights (this pass alone, on
           the input: exact weight by weight, the reference interpreter's DEQUANTIZE). It
           then measures the hybrid kernels' own difference from that reference in LiteRT
           and prints it, so the user sees what LiteRT's hybrid arithmetic added; `verify
           --hybrid-as-float` does the same comparison outside `optimize`.
Target:    `tflm` only (in the default pipeline; `any` and `litert` keep the hybrid op,
           which LiteRT runs well). The weights grow 4x: the summary prints the cost and the
           int8 route (`tflgraph optimize --target tflm --quantize data.npz` quantizes the
           whole model: int8 weights and activations, which TFLM runs).
Invariant: shapes, op types and every float operand unchanged; only int8 weight operands
           of float layers become float32.
"""

from __future__ import annotations

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.hybrid import dequantized, is_hybrid, is_int8_weight


@register("dequantize-hybrid")
class DequantizeHybrid(Pass):
    """Give hybrid (int8-weight, float-activation) layers float32 weights (--target tflm)."""

    def run(self, model: Model) -> bool:
        self.stats = {"layers": 0, "bytes_before": 0, "bytes_after": 0}
        if self.target != "tflm":
            self.explain(f"target {self.target}: hybrid layers stay (LiteRT runs them)")
            return False
        floats: dict[int, Tensor] = {}  # id(int8 weight) -> its float32 constant
        for sg in model.subgraphs:
            for op in list(sg.iter_ops()):
                if is_hybrid(op):
                    self._dequantize(sg, op, floats)
        return bool(self.stats["layers"])

    def _dequantize(self, sg: Subgraph, op: Operator, floats: dict[int, Tensor]) -> None:
        """Give `op` float weights; a weight several layers share (an unrolled RNN's steps)
        gets one float constant, and its bytes count once."""
        for i, w in enumerate(list(op.inputs)):
            if i == 0 or not is_int8_weight(w):
                continue
            dense = floats.get(id(w))
            if dense is None:
                floats[id(w)] = dense = sg.new_constant(dequantized(w), f"{w.name}_float")
                self.stats["bytes_before"] += w.buffer.nbytes
                self.stats["bytes_after"] += dense.buffer.nbytes
            sg.set_input(op, i, dense)
        self.stats["layers"] += 1

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """The size cost and the int8 route, for the optimize summary."""
        before, after = stats.get("bytes_before", 0), stats.get("bytes_after", 0)
        return [
            f"{stats.get('layers', 0)} hybrid layer(s) given float32 weights for TFLM: "
            f"{before:,} -> {after:,} bytes ({after - before:+,})",
            "for int8 weights on TFLM, quantize the whole model instead: "
            "tflgraph optimize --target tflm --quantize data.npz",
        ]
