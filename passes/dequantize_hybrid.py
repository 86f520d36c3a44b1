"""Give hybrid layers (int8 weights, float activations) float32 weights, for TFLM, which has
no hybrid kernels ("Input type: FLOAT32 with filter type: INT8 not supported").

Pattern:   FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D or UNIDIRECTIONAL_SEQUENCE_LSTM whose
           input is float32 and some of whose weight operands are int8 constants with a
           scale (the converter's dynamic-range quantization), in any subgraph.
Rewrite:   each such operand w -> a float32 constant (w - zero_point) * scale (per channel
           along quantized_dimension when the scale is a vector); the op is then a float op.
Values:    NOT the hybrid op's outputs. LiteRT's hybrid kernels quantize the float input to
           int8 on the fly (per row, asymmetric when asymmetric_quantize_inputs) and
           multiply integers, so their result carries the input's quantization error (up to
           half a step, max|x| / 254 per element, times the weights) on top of the weights'.
           The float layer computes exactly what the hybrid one approximates: the model with
           the dequantized weights. So the result equals the original in LiteRT only within
           that activation-quantization error (measured: tests/passes/
           test_dequantize_hybrid.py), far above tflgraph's verification bound of 1e-5.
Checked:   hence the pass is opt-in (not in the default pipeline: `optimize` verification
           would refuse its result against the hybrid original at 1e-5). In one step, with
           the bound stated:
             tflgraph optimize --target tflm --passes default,dequantize-hybrid --rtol 2e-2 \
                 in.tflite -o out.tflite
           or in two, the second verified at 1e-5 against the dequantized-float reference:
             tflgraph optimize --target tflm --passes dequantize-hybrid --no-verify \
                 in.tflite -o float.tflite
             tflgraph optimize --target tflm float.tflite -o out.tflite
           Every
           dequantized weight equals the reference interpreter's DEQUANTIZE of the int8 one;
           tests/passes/test_dequantize_hybrid.py checks the route on three converter
           fixtures: TFLM gives LiteRT's outputs of the float reference, and that reference
           is within 2e-2 of max|y| of the hybrid original in LiteRT (measured 2e-3 to 6e-3).
Target:    `tflm` only (`any` keeps the hybrid op, which LiteRT runs, and TFLM does not
           either way; `litert` runs hybrid kernels well). The weights grow 4x: the summary
           prints the cost; `optimize --target tflm` names hybrid layers it leaves
           (runtime.targets.hybrid_layers). For int8 weights on TFLM, quantize the whole model
           (`tflgraph quantize`, planned): int8 activations and weights, which TFLM runs.
Invariant: shapes, op types and every float operand unchanged; only int8 weight operands
           of float layers become float32.
"""

from __future__ import annotations

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.hybrid import dequantized, is_hybrid, is_int8_weight


@register("dequantize-hybrid")
class DequantizeHybrid(Pass):
    """Give hybrid (int8-weight, float-activation) layers float32 weights (TFLM; opt-in)."""

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
            "for int8 weights on TFLM, quantize the whole model (tflgraph quantize, planned)",
        ]
