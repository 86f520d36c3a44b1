"""One set of int8 quantization parameters per recurring value of an unrolled chain.

A converter's int8 unrolled RNN gives every step its own calibrated scales, so the T copies of
the cell differ only in their quantization parameters (tflgraph.rnn.reroll_find with
exact=False). One loop body needs one set per value (`requantize`):

    value v of the body, copies v_0..v_{T-1}:  [lo, hi] = union of [(-128 - z_t) s_t,
                                                                      (127 - z_t) s_t], 0 in it
                                               s = (hi - lo) / 255, z = round(-128 - lo / s),
                                               s widened until [(-128-z)s, (127-z)s] covers it
    kept as they are: values every copy of which shares one set; outputs of the ops whose int8
    kernels fix them (LOGISTIC 1/256, -128; TANH 1/128, 0; SOFTMAX); the step input (the
    sequence's); tensors from outside the chain; constants
    one set for a group: the values an op passes through without requantizing (RESHAPE,
    SPLIT, CONCATENATION, ...: TFLite's int8 kernels want the same parameters on both sides),
    and a state with the value the next step hands on (loop-carried: both sides of the body)
    int32 biases b (scale s_in * s_w): b' = round(b s_b / (s_in' s_w)) for the new input scale

The loop built with these parameters (tflgraph.rnn.reroll_loop) computes what the chain does
within the rounding of the wider scales; `measure` runs both models in LiteRT (builtin kernels,
the ones TFLM's are ported from) and TFLM and returns the largest output difference in
quantization steps (`output_steps`: an int8 output's integers, or a float output's DEQUANTIZE
scale), which the reroll pass holds against the user's bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model, Operator, Tensor
from tflgraph.quant.params import activation, qparams, scale_zp
from tflgraph.rnn.reroll_find import Unrolled
from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import load_inputs, ports

FIXED = ("LOGISTIC", "TANH", "SOFTMAX", "LOG_SOFTMAX")  # int8 kernels fix the output's params
# ops whose int8 kernels want one set of parameters on their data inputs and outputs
SAME = (
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "GATHER", "SPLIT", "SPLIT_V",
    "UNPACK", "PACK", "CONCATENATION", "TRANSPOSE", "PAD", "MAXIMUM", "MINIMUM",
)  # fmt: skip
BIASED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")  # input 2: int32 bias


@dataclass
class Requantized:
    """What the loop body uses instead of the chain's parameters: `params` per chain tensor
    (a state, a body op's output), `biases` per (body op, operand index)."""

    params: dict[Tensor, dict] = field(default_factory=dict)
    biases: dict[tuple[Operator, int], tuple[np.ndarray, dict]] = field(default_factory=dict)

    def of(self, t: Tensor) -> dict | None:
        return self.params.get(t, t.quantization)


def requantize(u: Unrolled) -> Requantized | str:
    """One set of parameters per recurring value of `u` (see the module docstring), or why
    there is none."""
    group = _groups(u)
    members: dict[Tensor, list[Tensor]] = {}
    for t in group:
        members.setdefault(_root(group, t), []).append(t)
    out = Requantized()
    for ts in members.values():
        got = _group_params(u, ts)
        if isinstance(got, str):
            return got
        out.params.update((t, got) for t in ts if t.is_quantized)
    for op in u.body_ops:
        if op.type in BIASED and len(op.inputs) > 2 and op.inputs[2] is not None:
            b, x, w = op.inputs[2], op.inputs[0], op.inputs[1]
            new = out.of(x)
            if b.type_name != "INT32" or not b.is_quantized or new is x.quantization:
                continue
            scale = float(new["scale"][0]) * np.asarray(w.quantization["scale"], np.float64)
            real = b.data.astype(np.float64) * np.asarray(b.quantization["scale"], np.float64)
            q = np.clip(np.round(real / scale), -(2**31), 2**31 - 1).astype(np.int32)
            params = {**b.quantization, "scale": scale.astype(np.float32)}
            out.biases[(op, 2)] = (q, params)
    return out


def _groups(u: Unrolled) -> dict[Tensor, Tensor]:
    """Union-find parents over the body's values: pass-through ops and loop-carried states."""
    parent: dict[Tensor, Tensor] = {}

    def join(a: Tensor, b: Tensor) -> None:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        parent[_root(parent, a)] = _root(parent, b)

    for op in u.body_ops:
        outs = [o for o in op.outputs if o is not None]
        for o in outs:
            parent.setdefault(o, o)
            if op.type in SAME:
                for i in op.inputs:
                    if i is not None and i.is_quantized and i.type == o.type:
                        join(o, i)
    for s, n in zip(u.states, u.nexts):
        join(s, n)
    for i in (i for op in u.body_ops for i in op.inputs if i is not None):
        parent.setdefault(i, i)
    return parent


def _root(parent: dict, t: Tensor) -> Tensor:
    while parent[t] is not t:
        parent[t] = parent[parent[t]]
        t = parent[t]
    return t


def _group_params(u: Unrolled, ts: list[Tensor]) -> dict | None | str:
    """The one set of parameters of a group of values, None when not quantized."""
    ts = [t for t in ts if t.is_quantized]
    if not ts:
        return None
    fixed = {_key(t.quantization): t.quantization for t in ts if _is_fixed(u, t)}
    copies = [c for t in ts for c in u.copies.get(t, [t])]
    sets = {_key(c.quantization): c.quantization for c in copies}
    if len(fixed) > 1:
        return f"{ts[0].name} must keep two sets of quantization parameters"
    if fixed:
        return next(iter(fixed.values()))
    if len(sets) == 1:
        return next(iter(sets.values()))
    if any(c.type_name != "INT8" or len(c.quantization["scale"]) != 1 for c in copies):
        return f"{ts[0].name} is not per-tensor int8"
    steps = [scale_zp(c.quantization) for c in copies]  # each copy's real range, 0 in it
    lo = min(0.0, *((-128 - zp) * s for s, zp in steps))
    hi = max(0.0, *((127 - zp) * s for s, zp in steps))
    scale, zp = scale_zp(activation(lo, hi))
    if zp < 127:  # the rounded zero point shifts the range: widen the scale to cover it
        scale = max(scale, hi / (127 - zp))
    if zp > -128:
        scale = max(scale, lo / (-128 - zp))
    return {**ts[0].quantization, **qparams(scale, zp)}


def _is_fixed(u: Unrolled, t: Tensor) -> bool:
    """Parameters this value must keep: no copies in the steps (the step input, a tensor from
    outside the chain, a constant) or the output of an op whose kernel fixes them."""
    p = u.sg.producer(t)
    return t not in u.copies or (p is not None and p.type in FIXED)


def _key(q: dict) -> tuple:
    return tuple(np.asarray(q["scale"]).tolist()), tuple(np.asarray(q["zero_point"]).tolist())


def output_steps(model: Model) -> list[float] | str:
    """One quantization step of each output of the main subgraph in the runtimes' units: 1
    for a quantized output (its integers), the scale of the int8 value a float output's
    DEQUANTIZE reads; or why the outputs have no such step (or both kinds: one bound cannot
    hold both units in optimize's check)."""
    sg, steps = model.main, []
    for t in sg.outputs:
        p = sg.producer(t)
        if t.is_quantized:
            steps.append(1.0)
        elif p is not None and p.type == "DEQUANTIZE" and p.inputs[0].is_quantized:
            scale = p.inputs[0].quantization["scale"]
            if len(scale) != 1:
                return f"output {t.name} is DEQUANTIZEd per channel"
            steps.append(float(scale[0]))
        else:
            return f"output {t.name} is float: no quantization step to count the bound in"
    if 1.0 in steps and any(s != 1.0 for s in steps):
        return "the model has quantized and float outputs (the bound counts steps of one kind)"
    return steps


def measure(
    original: Model, candidate: bytes, samples: int = 5, seed: int = 0, inputs=None
) -> dict | str:
    """{runtime: largest |candidate - original| over the outputs and `samples` random inputs
    (or the samples of `inputs`, an .npz path as `verify --inputs` reads) invoked in a row
    without reset, in quantization steps of each output (`output_steps`)}, LiteRT on its
    builtin kernels and TFLM, or why the outputs cannot be compared. A runtime that cannot
    run the original is left out; one that runs the original and not the candidate is an
    error."""
    steps = output_steps(original)
    if isinstance(steps, str):
        return steps
    in_ports = ports(original, "inputs")
    original = to_bytes(original)
    try:
        probe = runtimes.Session(original, "litert", kernels="builtin")
    except runtimes.RuntimeUnavailable as e:
        return f"cannot check it: {str(e)[:120]}"
    if inputs is not None:
        feeds = load_inputs(inputs, in_ports)
    else:
        rng = np.random.default_rng(seed)
        feeds = [runtimes.random_inputs(probe.inputs, rng) for _ in range(samples)]
    errors = {}
    for rt in runtimes.RUNTIMES:
        try:
            want = _run(original, feeds, rt)
        except runtimes.RuntimeUnavailable:
            continue
        try:
            got = _run(candidate, feeds, rt)
        except runtimes.RuntimeUnavailable as e:
            return f"{rt} cannot run the loop: {str(e)[:120]}"
        errors[rt] = max(
            int(np.round(np.max(np.abs(a.astype(np.float64) - b), initial=0) / step))
            for w, g in zip(want, got)
            for a, b, step in zip(w, g, steps)
        )
    return errors or "neither LiteRT nor TFLM runs the model"


def _run(data: bytes, feeds: list, rt: str) -> list:
    """Outputs per invoke, the feeds invoked in a row (LiteRT: builtin kernels)."""
    outs = runtimes.run_isolated(data, feeds, rt, modes=("no-reset",), kernels="builtin")
    return outs["no-reset"]
