"""Hoist the input projection of a recurrent loop out of the loop: one FULLY_CONNECTED over
all T steps instead of one per step.

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops.analyze_loop) whose body reads the step
           x_t = GATHER(seq, t) [B, F] with one or more
               y = FULLY_CONNECTED(x_t, W [U, F], b [U] | none)      (constant W and b)
           each optionally followed by its only reader ADD(y, c), c a constant of [U] or a
           scalar (the separate bias add of some converters).
Rewrite:   in the caller, P = RESHAPE(FULLY_CONNECTED(RESHAPE(seq, [T*B, F]), [W1; W2; ...],
           [b1'; b2'; ...]), [T, B, U1 + U2 + ...]) with b' = b + c, carried into the loop as a
           new pass-through operand; the body reads p_t = GATHER(P, t) and, for more than one
           projection, splits it back (SPLIT / SPLIT_V on the last axis). Every hoisted y (or
           ADD output) is replaced by its part of p_t. seq stays carried while anything else
           reads x_t (loop cleanup drops it otherwise).
Proof:     row r of FULLY_CONNECTED depends only on input row r, so P[t] is the per-step y;
           numerically, the hoisted P on a random sequence and the body's per-step values on
           the same rows at t = 0, T // 2, T - 1 must agree within 1e-6 (relative), else
           nothing is rewritten (folding c into the bias only reorders one float addition).
Invariant: model outputs equal within float rounding; the fused activation of FC/ADD is kept
           (units with different activations are hoisted as separate FCs).
Cost:      TFLM's WHILE copies every carried tensor three times per step, so carrying the
           projected [T, B, U] instead of [T, B, F] is slower there when U > F (GRU T=50,
           F=40, u=64: 1.18x the TFLM time, 0.92x in LiteRT). Unless the target is litert, a
           hoist must not make the loop carry more values than it frees.
"""

from __future__ import annotations

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.schema import ACTIVATION_CODES, new_options
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import compare, random_feed
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.rnn import loops
from tflgraph.rnn.cell_terms import is_float_const

# 1e-6, tighter than the default 1e-5: hoisting changes no arithmetic but the one float
# addition that folds c into the bias, so anything more than rounding is a wrong hoist
RTOL = 1e-6


@register("hoist-input-projection")
class HoistInputProjection(Pass):
    """Compute the loop's input projection FULLY_CONNECTED(x_t, W) for all steps at once."""

    def run(self, model: Model) -> bool:
        hoisted = 0
        for loop in loops.rnn_loops(model, self.explain):
            for k, x_t in enumerate(loop.steps):
                units = _units(loop.body, x_t)
                if not units:
                    continue
                # one group per run: the WHILE op is rebuilt, the fixed point does the rest
                group = [u for u in units if u.act == units[0].act]
                if self._hoist(loop, k, group):
                    hoisted += len(group)
                    break
        self.stats = {"projections_hoisted": hoisted}
        return bool(hoisted)

    def _hoist(self, loop: loops.RnnLoop, k: int, units: list[_Unit]) -> bool:
        sg, body, seq = loop.sg, loop.body, loop.sequences[k]
        if len(seq.init.shape) != 3 or seq.init.shape[0] != loop.trip_count:
            self.explain(f"{body.name}: sequence is not [T, B, F] with T = trip count")
            return False
        if seq.init.is_dynamic:  # the caller's RESHAPEs would freeze a dynamic batch
            self.explain(f"{body.name}: the sequence has a dynamic shape")
            return False
        T, B, F = (int(d) for d in seq.init.shape)
        width = sum(int(u.w.shape[0]) for u in units)
        x_t = loop.steps[k]
        freed = F if len(units) == len(loop.body.consumers(x_t)) else 0
        if self.target != "litert" and width > freed:
            # TFLM copies every carried tensor three times per step: carrying [T, B, width]
            # costs more than the per-step FULLY_CONNECTED dispatch it saves
            self.explain(f"{body.name}: hoisting would carry {width} > {freed} values per step")
            return False
        w = np.concatenate([u.w for u in units])
        b = np.concatenate([u.bias for u in units]).astype(np.float32)
        U = w.shape[0]
        name = f"{body.name}/hoisted_projection"
        flat = sg.new_tensor(name + "/x", (T * B, F), "float32")
        sg.add_op("RESHAPE", [seq.init, sg.new_constant(np.array([T * B, F], np.int32))], [flat])
        proj = sg.new_tensor(name + "/fc", (T * B, U), "float32")
        w_t, b_t = sg.new_constant(w, name + "/w"), sg.new_constant(b, name + "/b")
        fc_opts = new_options(
            "FullyConnectedOptions", fused_activation_function=ACTIVATION_CODES[units[0].act]
        )
        sg.add_op("FULLY_CONNECTED", [flat, w_t, b_t], [proj], fc_opts)
        P = sg.new_tensor(name, (T, B, U), "float32")
        sg.add_op("RESHAPE", [proj, sg.new_constant(np.array([T, B, U], np.int32))], [P])
        why = self._proved(loop, k, units, P)
        if why:
            self.explain(f"{body.name}: hoisted projection not proved equal: {why}")
            return False
        _, (p_arg,) = loops.rebuild_while(loop.sg, loop.op, add=[P])
        row = body.new_tensor(name + "/row", (B, U), "float32")
        body.add_op("GATHER", [p_arg, loop.time.arg], [row], {"axis": 0, "batch_dims": 0})
        parts = _split_last(body, row, [u.w.shape[0] for u in units])
        for u, part in zip(units, parts):
            body.replace_all_uses(u.out, part)
        return True

    def _proved(self, loop, k, units, P) -> str | None:
        """None if the hoisted P equals the body's per-step values on the same rows."""
        seq = loop.sequences[k]
        data = random_feed(seq.init, np.random.default_rng(0))
        if data is None:
            return f"cannot check: no random values for a {seq.init.type_name} sequence"
        try:
            (p,) = evaluate_tensors(loop.sg, {seq.init: data}, [P])
            for t in sorted({0, loop.trip_count // 2, loop.trip_count - 1}):
                want = evaluate_tensors(loop.body, {loop.steps[k]: data[t]}, [u.out for u in units])
                why = compare(np.concatenate(want, axis=-1), p[t], RTOL, what=f"step {t}")
                if why:
                    return f"not equal: {why}"
        except (TflgraphError, ValueError) as e:
            return f"cannot check: {e}"
        return None


class _Unit:
    """One hoistable projection: FC(x_t, w, b) [+ ADD c]; `out` is what the body reads."""

    def __init__(self, fc: Operator, add: Operator | None, w, bias, act: str, out: Tensor):
        self.fc, self.add, self.w, self.bias, self.act, self.out = fc, add, w, bias, act, out


def _units(body: Subgraph, x_t: Tensor) -> list[_Unit]:
    units = []
    for fc in body.consumers(x_t):
        u = _unit(body, fc, x_t)
        if u is not None:
            units.append(u)
    return units


def _float_const(t: Tensor | None) -> np.ndarray | None:
    """The value of a float32, not quantized constant, else None."""
    return t.data if is_float_const(t) else None


def _unit(body: Subgraph, fc: Operator, x_t: Tensor) -> _Unit | None:
    if fc.type != "FULLY_CONNECTED" or fc.inputs[0] is not x_t or len(x_t.shape) != 2:
        return None
    w = _float_const(fc.inputs[1])
    if w is None or w.ndim != 2 or w.shape[1] != x_t.shape[1]:
        return None
    bias_t = fc.inputs[2] if len(fc.inputs) > 2 else None
    bias = np.zeros(w.shape[0], np.float32) if bias_t is None else _float_const(bias_t)
    if bias is None or fc.option("weights_format", 0):
        return None
    out, add = fc.outputs[0], None
    readers = body.consumers(out)
    if fc.activation == "NONE" and len(readers) == 1 and readers[0].type == "ADD":
        other = [t for t in readers[0].inputs if t is not out]
        c = _float_const(other[0]) if len(other) == 1 else None
        if c is not None and c.size in (1, w.shape[0]) and not _is_output(body, out):
            add, bias, out = readers[0], bias + c.reshape(-1), readers[0].outputs[0]
    return _Unit(fc, add, w, bias.reshape(-1), (add or fc).activation, out)


def _is_output(sg: Subgraph, t: Tensor) -> bool:
    return any(t is o for o in sg.outputs)


def _split_last(body: Subgraph, row: Tensor, sizes: list[int]) -> list[Tensor]:
    """row [B, sum(sizes)] split on the last axis (no op for one part)."""
    if len(sizes) == 1:
        return [row]
    B = row.shape[0]
    parts = [body.new_tensor(f"{row.name}_{i}", (B, n), "float32") for i, n in enumerate(sizes)]
    axis = body.new_constant(np.array(-1, np.int32), f"{row.name}/axis")
    loops.add_split(body, row, axis, parts, sizes, f"{row.name}/sizes")
    return parts
