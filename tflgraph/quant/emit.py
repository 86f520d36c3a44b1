"""Rewrite a calibrated float model into full integer form.

Each op type has a row in RULES: how its outputs' parameters are chosen (`plan`) and what its
constant operands become (`emit`). Planning walks the ops in execution order:

- "range": the output's calibrated range (asymmetric int8);
- "fixed": LOGISTIC and SOFTMAX at 1/256 zero point -128, TANH at 1/128 zero point 0 (the
  kernels compute these whatever the tensor says);
- "same": the output takes the parameters of its data operand (reshapes, slices, gathers, max
  pooling move bytes and do not rescale);
- "shared": CONCATENATION and PACK copy bytes from every input, so each input must carry the
  output's parameters (the output's range covers all inputs'): the op computing an input writes
  them itself where it rescales anyway, any other input is requantized by a QUANTIZE before it;
- "update": DYNAMIC_UPDATE_SLICE writes bytes of its update into its buffer: the output has the
  buffer's parameters, an update with others is requantized;
- the fused LSTM: lstm.py (the output and h share parameters, the cell state is int16);
- WHILE: loops.py (a loop-carried value has one set of parameters everywhere it lives); in a
  loop of kind "int16" (`loops`, per loop) the values the body computes and carries are int16
  (the 16x8 kernels: int8 weights, int16 activations with zero point 0, int32/int64 biases;
  LOGISTIC, TANH at 1/32768), which both runtimes have for every op a recurrent cell uses; an
  operand of the other integer type (x[t] read from the int8 input sequence, an int16 loop
  output read by an int8 op after the loop) goes through a QUANTIZE.
Ops that touch no float tensor (counters, indices, comparisons) are left as they are.

Weights become symmetric int8 (per channel where the kernel allows and it buys resolution, see
params.py: FULLY_CONNECTED and CONV_2D along the output channels, DEPTHWISE_CONV_2D along the
last axis), biases int32 at s_input * s_weight, bias-corrected in the main subgraph: the
rounding of the weights shifts each output channel's mean by sum (W_int8 - W) * E[x], which
the bias takes back (E[x] per input channel from calibration: `layer_inputs`; a ReLU layer's
inputs have far-from-zero means, so the roundings add up instead of cancelling); any other
float constant operand is quantized over its own values. An op on float values without a row
is refused with its name, as are IF and CALL_ONCE: nothing is emitted wrong. The model's
inputs and outputs: edges.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tflgraph.io.schema import new_options, tensor_type_of
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.quant import edges, loops, lstm, params
from tflgraph.quant.calibration import QuantizeError, Ranges

LOGISTIC_Q = (1 / 256, -128)
TANH_Q = (1 / 128, 0)
FIXED16 = (1 / 32768, 0)  # LOGISTIC, TANH and SOFTMAX with int16 outputs

FIXED = {"LOGISTIC": LOGISTIC_Q, "SOFTMAX": LOGISTIC_Q, "TANH": TANH_Q}
# op type -> (plan kind or fixed (scale, zp), the data operand for "same", weight axis)
RULES: dict[str, tuple] = {
    "FULLY_CONNECTED": ("range", None, 0),
    "CONV_2D": ("range", None, 0),
    "DEPTHWISE_CONV_2D": ("range", None, 3),
    "ADD": ("range", None, None),
    "SUB": ("range", None, None),
    "MUL": ("range", None, None),
    "RELU": ("range", None, None),
    "RELU6": ("range", None, None),
    "LEAKY_RELU": ("range", None, None),
    "MEAN": ("range", None, None),
    **{op_type: (q, None, None) for op_type, q in FIXED.items()},
    "RESHAPE": ("same", 0, None),
    "SQUEEZE": ("same", 0, None),
    "EXPAND_DIMS": ("same", 0, None),
    "STRIDED_SLICE": ("same", 0, None),
    "SLICE": ("same", 0, None),
    "TRANSPOSE": ("same", 0, None),
    "GATHER": ("same", 0, None),
    "MAX_POOL_2D": ("same", 0, None),
    "AVERAGE_POOL_2D": ("same", 0, None),
    "SPLIT": ("same", 1, None),
    "SPLIT_V": ("same", 0, None),
    "UNPACK": ("same", 0, None),
    "REVERSE_V2": ("same", 0, None),
    "CONCATENATION": ("shared", None, None),
    "PACK": ("shared", None, None),
    "FILL": ("state", None, None),  # the zero initial state of a fused LSTM (fuse-lstm's)
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("lstm", None, None),
    "DYNAMIC_UPDATE_SLICE": ("update", None, None),
    "WHILE": ("while", None, None),
    "QUANTIZE": ("inserted", None, None),  # a requantization this rewrite placed itself
}


def refusals(model: Model) -> list[str]:
    """Why the model cannot be quantized: one reason per op type (empty when it can)."""
    why: dict[str, str] = {}
    if any(sd.subgraph is not model.main for sd in model.signature_defs):
        why["signatures"] = "several entry subgraphs (signatures): only one is quantized here"
    for op in (op for sg in model.reachable_subgraphs() for op in sg.iter_ops()):
        if op.type in ("QUANTIZE", "DEQUANTIZE"):
            why.setdefault(op.type, f"{op.type}: the model is already (partly) quantized")
        elif any(_is_float(t) for t in op.inputs if t is not None) and any(
            t.is_constant and t.is_quantized and not _is_float(t) for t in op.inputs if t
        ):
            why.setdefault(
                "hybrid",
                f"{op.type} has int8 weights and float activations (a dynamic-range model): "
                "`tflgraph optimize --target tflm` gives it float weights",
            )
        elif op.type not in RULES and _touches_float(op):
            kind = " (control flow)" if op.subgraphs() else ""
            why.setdefault(op.type, f"{op.type}{kind} has no int8 form here")
        elif op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM" and (reason := lstm.why_not(op)):
            why.setdefault(op.type, f"UNIDIRECTIONAL_SEQUENCE_LSTM with {reason}")
        elif any(_is_float(t) and t.is_quantized for t in op.inputs if t is not None):
            why.setdefault(op.type, f"{op.type} already has quantized operands")
    return list(why.values())


def check_quantizable(model: Model) -> None:
    """Raise QuantizeError naming every op type the model cannot be quantized for."""
    why = refusals(model)
    if why:
        raise QuantizeError("cannot quantize: " + "; ".join(why))


def _touches_float(op: Operator) -> bool:
    return op.subgraphs() or any(_is_float(t) for t in (*op.inputs, *op.outputs) if t is not None)


def _is_float(t: Tensor) -> bool:
    return t.dtype is not None and t.dtype.kind == "f"


def layer_inputs(model: Model) -> dict[Tensor, int]:
    """The data inputs of the main subgraph's float layers with a bias (FULLY_CONNECTED,
    CONV_2D, DEPTHWISE_CONV_2D), with their channel count: the tensors whose channel means
    bias correction needs (calibrate's `means`)."""
    out = {}
    for op in model.main.operators:
        axis = RULES.get(op.type, (None, None, None))[2]
        if axis is None or op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM" or len(op.inputs) < 3:
            continue
        x, w, b = op.inputs[:3]
        if x is not None and _is_float(x) and w is not None and w.is_constant and b is not None:
            # FULLY_CONNECTED reads rows of w's width, the convolutions the channel axis
            out[x] = w.shape[1] if op.type == "FULLY_CONNECTED" else x.shape[-1]
    return out


def _bias_correction(
    op: Operator, w: np.ndarray, q: np.ndarray, wq: dict, mean: np.ndarray
) -> np.ndarray:
    """How much the int8 weights `q` (parameters `wq`) of the float weights `w` shift each
    output channel's mean on inputs of channel means `mean`: sum (W_int8 - W) * E[x] (0
    where the shapes do not match: a grouped convolution, say)."""
    w = np.asarray(w, np.float64)
    scale = wq["scale"].astype(np.float64)
    shape = [1] * w.ndim
    if len(scale) > 1:
        shape[wq["quantized_dimension"]] = -1
    dw = q.astype(np.float64) * scale.reshape(shape) - w
    if op.type == "FULLY_CONNECTED" and dw.shape[1] == len(mean):
        return dw @ mean
    if op.type == "CONV_2D" and dw.shape[3] == len(mean):
        return np.einsum("ohwi,i->o", dw, mean)
    if op.type == "DEPTHWISE_CONV_2D" and dw.shape[3] % len(mean) == 0:
        per_output = np.repeat(mean, dw.shape[3] // len(mean))  # depth multiplier
        return np.einsum("hwc,c->c", dw[0], per_output)
    return np.zeros(dw.shape[0 if op.type != "DEPTHWISE_CONV_2D" else 3])


def _activations(sg: Subgraph) -> list[Tensor]:
    """The float tensors whose values are computed or carried (not constants)."""
    return [t for t in sg.tensors if _is_float(t) and not t.is_constant]


def quantize_model(
    model: Model, ranges: Ranges, io: str = "int8", loops: str | Sequence[str] = "int8"
) -> None:
    """Rewrite `model` in place into int8 (see the module docstring); `io` "int8" makes its
    inputs and outputs int8, "float" keeps them float with QUANTIZE / DEQUANTIZE at the edges;
    `loops`: what WHILE bodies compute in, "int8" or "int16" (int16 activations), for every
    loop or one per WHILE of the main subgraph in order (a loop nested in a body computes in
    its body's kind)."""
    check_quantizable(model)
    if io == "float":
        edges.check_float_outputs(model.main)
    top = model.main.ops_of_type("WHILE")
    kinds = [loops] * len(top) if isinstance(loops, str) else list(loops)
    if len(kinds) != len(top) or not set(kinds) <= {"int8", "int16"}:
        raise ValueError(f"loops: {loops!r} for {len(top)} loop(s)")
    plans: dict[Tensor, tuple] = {}
    _plan(model.main, ranges, plans, {}, dict(zip(top, kinds)))
    subgraphs = model.reachable_subgraphs()
    for sg in subgraphs:
        for op in sg.operators:
            if _touches_float(op):
                _emit(sg, op, plans, ranges if sg is model.main else None)
        for t in _activations(sg):
            if t in plans:
                dtype, q = plans[t]  # float32 (with q None): a value that stays float
                t.type, t.quantization = tensor_type_of(dtype), q
            elif sg.graph.degree(t) or t in sg.inputs or t in sg.outputs:
                raise QuantizeError(f"tensor {t.name!r} got no quantization parameters")
    if io == "float":
        edges.float_inputs(model.main)
    edges.int8_outputs(model.main)  # after the inputs' QUANTIZE: see check_state_order
    if io == "float":
        edges.float_outputs(model.main)
    edges.check_state_order(model.main)
    for sg in subgraphs:
        sg.remove_unused_tensors()


def _plan(
    sg: Subgraph, ranges: Ranges, plans: dict, preset: dict, kinds: dict, wide: bool = False
) -> None:
    """Parameters for the float values of `sg` into `plans`; `preset`: what the outputs of
    rescaling ops must carry (a loop body's outputs); `kinds`: WHILE op -> "int8" / "int16"
    (a WHILE not in it: "int16" in a wide subgraph, else "int8"); `wide`: int16 values (the
    body of an "int16" loop)."""

    def from_range(t: Tensor) -> tuple:
        r = ranges.of(t)
        if r is None:
            raise QuantizeError(f"tensor {t.name!r} took no finite value during calibration")
        return (np.int16, params.symmetric16(*r)) if wide else (np.int8, params.activation(*r))

    def loop_planner(wide_body: bool):
        def plan_body(body: Subgraph, body_preset: dict) -> None:
            _plan(body, ranges, plans, {} if wide_body else body_preset, kinds, wide_body)

        return plan_body

    preset = {} if wide else {**_shared_presets(sg, ranges), **preset}
    for t in sg.inputs:
        if t not in plans and _is_float(t):
            plans[t] = from_range(t)
    for op in sg.operators:
        if not _touches_float(op):
            continue  # counters, indices, comparisons
        kind, data, _ = RULES[op.type]
        outs = [t for t in op.outputs if t is not None and _is_float(t)]
        if kind == "lstm":
            lstm.plan(sg, op, ranges, plans, preset)
        elif kind == "while":
            wide_body = kinds.get(op, "int16" if wide else "int8") == "int16"
            loops.plan(sg, op, ranges, plans, loop_planner(wide_body), FIXED, wide_body)
        elif kind == "same":
            for t in outs:
                plans[t] = plans[op.inputs[data]]
        elif kind == "update":
            plans[outs[0]] = plans[op.inputs[0]]
        elif kind == "shared":
            plans[outs[0]] = _shared_params(op, ranges, wide)
        elif isinstance(kind, tuple):
            fixed = (np.int16, FIXED16) if wide else (np.int8, kind)
            plans[outs[0]] = (fixed[0], params.qparams(*fixed[1]))
        elif kind == "range":
            for t in outs:
                plans[t] = preset.get(t) or from_range(t)
        # "state": FILL's output is planned by the op that reads it (an LSTM, a WHILE)
        for t in op.inputs:
            if t is not None and _is_float(t) and not t.is_constant and t not in plans:
                plans[t] = from_range(t)  # a variable tensor read before any op writes it


def _shared_params(op: Operator, ranges: Ranges, wide: bool = False) -> tuple:
    """A CONCATENATION's or PACK's output parameters: over all its inputs' ranges."""
    rs = [ranges.of(t) or (0.0, 0.0) for t in (*op.inputs, op.outputs[0]) if t is not None]
    lo, hi = min(r[0] for r in rs), max(r[1] for r in rs)
    return (np.int16, params.symmetric16(lo, hi)) if wide else (np.int8, params.activation(lo, hi))


def _shared_presets(sg: Subgraph, ranges: Ranges) -> dict:
    """Tensor -> the parameters it is to carry so that a CONCATENATION / PACK needs no
    requantization (one per input otherwise, whose rounding also makes LiteRT and TFLM differ
    by 2 LSB where a 1 LSB difference is rescaled): each input is traced back through ops that
    move bytes ("same") and have one reader to the op that computes it; where that op rescales
    anyway ("range", the fused LSTM) it writes the shared parameters directly."""
    out: dict = {}
    for op in sg.operators:
        if op.type not in RULES or RULES[op.type][0] != "shared" or not _touches_float(op):
            continue
        q = _shared_params(op, ranges)
        for t in op.inputs:
            while t is not None and _is_float(t) and len(sg.consumers(t)) == 1:
                if any(t is x for x in sg.outputs) or (src := sg.producer(t)) is None:
                    break
                kind, data, _ = RULES.get(src.type, (None, None, None))
                if kind in ("range", "lstm"):
                    out.setdefault(t, q)
                    break
                t = src.inputs[data] if kind == "same" else None
    return out


def _emit(sg: Subgraph, op: Operator, plans: dict, ranges: Ranges | None) -> None:
    """`op` in integer form; `ranges` (None: no bias correction) holds the channel means of
    its input."""
    kind, _, axis = RULES[op.type]

    def constant(op: Operator, k: int, q: np.ndarray, quant: dict) -> None:
        old = op.inputs[k] if k < len(op.inputs) else None
        new = sg.new_constant(q, name=old.name if old is not None else "bias", quantization=quant)
        sg.set_input(op, k, new)
        if old is not None and not sg.is_used(old):
            old.name, new.name = new.name, old.name

    if kind == "inserted":
        return
    if kind not in ("same", "update", "state", "while"):
        _match_input_types(sg, op, plans)
    if kind == "while":
        loops.emit(op, plans, constant)
        return
    if kind == "update":
        _requantize_inputs(sg, op, [1], plans[op.outputs[0]], plans)
        return
    if kind == "lstm":
        lstm.emit(sg, op, plans, constant)
        return
    if kind == "state":
        _zero_state(sg, op, plans, constant)
        return
    if kind == "shared":
        _share(sg, op, plans)
        return
    wide = plans[op.outputs[0]][0] == np.int16 if op.outputs and op.outputs[0] in plans else False
    if axis is not None:  # a layer: weights operand 1, bias operand 2
        w = op.inputs[1]
        if w is None or not w.is_constant:
            raise QuantizeError(f"{op.type} {op.outputs[0].name!r}: weights are not a constant")
        # 16x8 layers: per-tensor weights (what both runtimes were measured with); an int32
        # bias where it fits (both runtimes take it, half the bytes of int64), else int64
        w = w.data
        q, wq = params.weights(w, None if wide else params.channel_axis(w, axis))
        constant(op, 1, q, wq)
        b = op.inputs[2] if len(op.inputs) > 2 else None
        if b is not None:
            s_in, _ = params.scale_zp(plans[op.inputs[0]][1])
            mean = ranges.mean(op.inputs[0]) if ranges is not None and not wide else None
            value = b.data if mean is None else b.data - _bias_correction(op, w, q, wq, mean)
            qb, bq = params.bias(value, s_in, wq, np.int64 if wide else np.int32)
            if wide and np.abs(qb).max(initial=0) < 2**31 - 1:
                qb = qb.astype(np.int32)
            constant(op, 2, qb, bq)
        return
    if wide and op.type in ("ADD", "SUB"):  # any scales, not only powers of two
        op.options = new_options(op.options.kind, **{**op.options, "pot_scale_int16": False})
    for k, t in enumerate(op.inputs):  # float constants read as activations
        if t is not None and t.is_constant and _is_float(t):
            value, lo, hi = t.data, float(t.data.min()), float(t.data.max())
            q = params.symmetric16(lo, hi) if wide else params.activation(lo, hi)
            constant(op, k, params.quantize(value, q, np.int16 if wide else np.int8), q)


def _zero_state(sg: Subgraph, op: Operator, plans: dict, constant) -> None:
    """FILL writing an LSTM's zero initial state: an int8 FILL of the state's zero point; an
    int16 state (the cell) stays a float FILL followed by a QUANTIZE, TFLM's FILL having no
    int16 kernel (it fails at invoke)."""
    state = op.outputs[0]
    dtype, q = plans[state]
    if dtype != np.int16:
        constant(op, 1, params.quantize(np.zeros(()), q, dtype), q)
        return
    quantized = sg.new_tensor(f"{state.name}_int16", state.shape, "float32", is_variable=True)
    sg.replace_all_uses(state, quantized)
    if any(t is quantized for t in sg.outputs):  # the output keeps its name
        state.name, quantized.name = quantized.name, state.name
    plans[quantized], plans[state] = plans[state], (np.float32, None)
    state.is_variable = False
    sg.add_op("QUANTIZE", [state], [quantized])


def _share(sg: Subgraph, op: Operator, plans: dict) -> None:
    """Every input of a CONCATENATION / PACK carries the output's parameters."""
    _requantize_inputs(sg, op, range(len(op.inputs)), plans[op.outputs[0]], plans)


def _match_input_types(sg: Subgraph, op: Operator, plans: dict) -> None:
    """An op computing int16 values (in an int16 loop body) reads int16 operands, one
    computing int8 values int8 ones: an operand of the other type (x[t] or a state entering
    an int16 body, an int16 loop output read after the loop) goes through a QUANTIZE over the
    same range. (A fused LSTM: its input 0; its states are planned by lstm.py.)"""
    out = op.outputs[0] if op.outputs else None
    if out not in plans:
        return
    want = plans[out][0]
    which = [0] if op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM" else range(len(op.inputs))
    for k in which:
        t = op.inputs[k]
        if t is None or t.is_constant or not _is_float(t) or plans[t][0] == want:
            continue
        scale, zp = params.scale_zp(plans[t][1])
        info = np.iinfo(plans[t][0])
        lo, hi = (info.min - zp) * scale, (info.max - zp) * scale
        q = params.symmetric16(lo, hi) if want == np.int16 else params.activation(lo, hi)
        _requantize_inputs(sg, op, [k], (want, q), plans)


def _requantize_inputs(sg: Subgraph, op: Operator, which, out_q: tuple, plans: dict) -> None:
    """Operands `which` of `op` carry `out_q` (dtype, parameters): a constant is quantized with
    it, an activation with others goes through a requantizing QUANTIZE."""
    for k in which:
        t = op.inputs[k]
        if t is None or not _is_float(t):
            continue
        if t.is_constant:
            value = params.quantize(t.data, out_q[1], out_q[0])
            sg.set_input(op, k, sg.new_constant(value, t.name, out_q[1]))
        elif not params.same_plan(plans[t], out_q):
            moved = sg.new_tensor(f"{t.name}_requantized", t.shape, "float32")
            plans[moved] = out_q
            sg.add_op("QUANTIZE", [t], [moved])
            sg.set_input(op, k, moved)
