"""UNIDIRECTIONAL_SEQUENCE_LSTM in the int8x8_16 form that LiteRT and TFLM both run
(/work/shared/INT8_NOTES.md, read from lstm.cc / lstm_eval.cc of both runtimes):

- input 0 and the output int8; the output, the hidden state (input 18) and intermediate 4 share
  one set of parameters (TFLM copies h into the output's bytes; LiteRT reads h's scale from
  intermediate 4): the calibrated range of the output and of h over every step;
- weights 1-8 int8, per tensor, symmetric (per-channel ones are read wrongly by both kernels);
- biases 12-15 int32 at s_input * s_W of the gate's input weights, zero point 0;
- the cell state (input 19) int16 at 2^k, k = ceil(log2 max|c|) - 15 clamped to [-15, -9]
  (LiteRT's integer tanh takes 0-6 integer bits);
- exactly 5 intermediates: 0-3 float32 shape-[0] placeholders, 4 = the hidden parameters.
No CIFG, peephole, projection or layer norm, fused activation TANH: anything else is refused.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Operator, Subgraph
from tflgraph.quant import params
from tflgraph.quant.calibration import QuantizeError, Ranges

X, H, C = 0, 18, 19
INPUT_WEIGHTS, RECURRENT_WEIGHTS, BIASES = range(1, 5), range(5, 9), range(12, 16)
ABSENT = (9, 10, 11, 16, 17, 20, 21, 22, 23)  # CIFG's absence, peepholes, projection, norms
CELL_K = (-15, -9)


def why_not(op: Operator) -> str | None:
    """None when the op has the int8x8_16 form, else the reason."""
    xs = list(op.inputs) + [None] * (24 - len(op.inputs))
    if op.activation != "TANH":
        return f"fused activation {op.activation} (int8 LSTM kernels compute TANH)"
    if op.option("proj_clip", 0.0):
        return "a projection clip"
    missing = [k for k in (*INPUT_WEIGHTS, *RECURRENT_WEIGHTS) if xs[k] is None]
    if missing:
        return "CIFG (no input gate)" if 1 in missing else f"no weights at operand {missing[0]}"
    present = [k for k in ABSENT if xs[k] is not None]
    if present:
        return f"peephole, projection or layer-norm operand {present[0]} (TFLM has none)"
    if not all(
        xs[k] is not None and xs[k].is_constant for k in (*INPUT_WEIGHTS, *RECURRENT_WEIGHTS)
    ):
        return "weights that are not constants"
    if xs[H] is None or xs[C] is None or not (xs[H].is_variable and xs[C].is_variable):
        return "states that are not variable tensors"
    return None


def plan(sg: Subgraph, op: Operator, ranges: Ranges, plans: dict, preset: dict) -> None:
    """Parameters of the output, h (one set: `preset`'s for the output if it has some, e.g. a
    CONCATENATION's, else the range of the output and of h over every step) and the int16 cell
    state. A state that already has others (h from another layer's output: a seq2seq decoder)
    is requantized into a variable of its own by a QUANTIZE; a cell shared with another LSTM
    takes the larger of their scales. The chunks of one sequence (fused LSTMs on the same h
    and c variables, chunk-sequence-lstm's form) get one plan from the union of their ranges,
    so the state passes from chunk to chunk as it is."""
    out, c = op.outputs[0], op.inputs[C]
    chunks = _chunks(sg, op)
    lo, hi = _union(
        *(ranges.of(o.outputs[0]) for o in chunks),
        *(ranges.inside.get((o, "hidden")) for o in chunks),
    )
    given = [preset[o.outputs[0]] for o in chunks if o.outputs[0] in preset]
    hidden = given[0] if given else (np.int8, params.activation(lo, hi))
    plans[out] = hidden
    _state(sg, op, H, hidden, plans)
    cells = [r for o in chunks if (r := ranges.inside.get((o, "cell"))) is not None]
    cell = (min(r[0] for r in cells), max(r[1] for r in cells)) if cells else None
    max_abs = max(abs(cell[0]), abs(cell[1])) if cell else 1.0
    scale, _ = params.power_of_two_scale(max_abs, 16, *CELL_K)
    other = plans.get(c)
    if other is not None and other[0] == np.int16:  # another LSTM's cell: one scale for both
        scale = max(scale, params.scale_zp(other[1])[0])
        plans[c] = (np.int16, params.qparams(scale, 0))
    else:
        _state(sg, op, C, (np.int16, params.qparams(scale, 0)), plans)


def _state(sg: Subgraph, op: Operator, k: int, plan: tuple, plans: dict) -> None:
    """Operand k (a state) gets `plan`; if it already has another, through a requantization."""
    t = op.inputs[k]
    if t not in plans:
        plans[t] = plan
        return
    if params.same_plan(plans[t], plan):  # an earlier chunk of the same sequence
        return
    moved = sg.new_tensor(f"{t.name}_requantized", t.shape, "float32", is_variable=True)
    sg.add_op("QUANTIZE", [t], [moved])
    sg.set_input(op, k, moved)
    plans[moved] = plan


def _chunks(sg: Subgraph, op: Operator) -> list[Operator]:
    """The fused LSTMs that run on `op`'s own h and c variables (`op` included)."""
    h, c = op.inputs[H], op.inputs[C]
    return [
        o for o in sg.consumers(h) if o.type == op.type and o.inputs[H] is h and o.inputs[C] is c
    ] or [op]


def _union(*rs):
    rs = [r for r in rs if r is not None]
    if not rs:
        raise QuantizeError("the LSTM's output was never computed during calibration")
    return min(r[0] for r in rs), max(r[1] for r in rs)


def emit(sg: Subgraph, op: Operator, plans: dict, constant) -> None:
    """Quantized weights, biases and intermediates for `op` (activations are typed later)."""
    x_q = plans[op.inputs[X]][1]
    hidden_q = plans[op.outputs[0]][1]
    s_x, _ = params.scale_zp(x_q)
    weight_q = {}
    for k in (*INPUT_WEIGHTS, *RECURRENT_WEIGHTS):
        q, wq = params.weights(op.inputs[k].data, axis=None)
        weight_q[k] = wq
        constant(op, k, q, wq)
    for gate, k in enumerate(BIASES):
        b = op.inputs[k].data if op.inputs[k] is not None else np.zeros(op.inputs[1].shape[0])
        q, bq = params.bias(b, s_x, weight_q[INPUT_WEIGHTS[gate]])
        constant(op, k, q, bq)
    names = ("input_to_input", "input_to_forget", "input_to_cell", "input_to_output")
    intermediates = [sg.new_tensor(f"{n}_intermediate", (0,), "float32") for n in names]
    hidden = sg.new_tensor("effective_hidden_scale_intermediate", (0,), "int8")
    hidden.quantization = hidden_q
    op.intermediates = type(op.intermediates)([*intermediates, hidden])
