"""Fuse every WHILE loop that computes one LSTM step into one UNIDIRECTIONAL_SEQUENCE_LSTM.

Pattern:   a recurrent WHILE loop (tflgraph.loops: counters, GATHER(seq, t), accumulator,
           states h and c) whose body is one Keras LSTM step (tflgraph.lstm_cell: sigmoid
           gates i|f|c|o, tanh or relu activation, no mask).
Rewrite:   h0v, c0v = FILL([B, u], 0.0) twice       # or RESHAPE(h0) for a non-zero state
           y = UNIDIRECTIONAL_SEQUENCE_LSTM(x, W_i..W_o, U_i..U_o, b_i..b_o, h0v, c0v,
                                            cell_clip=0, time_major=x is time-major)
           acc[-1] and the final h -> STRIDED_SLICE(y)[last step]; the whole sequence -> y
           (the RESHAPE/TRANSPOSE to and from time-major fold away); the final c -> c0v,
           which the fused op updates in place.
Proof:     W, U and b are read from the body's FULLY_CONNECTED, ADD and SPLIT ops; the body's
           h' and c' are evaluated with the reference interpreter on random x, h, c and
           compared with the LSTM equations (lstm_cell.prove_lstm_cell). Any mismatch, and any
           use of the loop that the rewrite cannot reproduce, leaves the loop alone.
Invariant: every model output equals the loop's, invoke after invoke without reset: h0v and
           c0v are variable tensors that an op re-writes at the start of every invoke, so the
           fused op starts from the loop's initial state each time (LiteRT and TFLM both keep
           variable tensors across invokes otherwise). `stateful_streaming = True` drops those
           ops for loops starting from zeros: the state then carries over between invokes
           (chunked streaming), which changes outputs on purpose and is never the default.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.loops import (
    RnnLoop,
    analyze_loop,
    batch_major_source,
    is_last_step_slice,
    replace_result,
    swaps_time_batch,
    while_loops,
    with_static_accumulator,
)
from tflgraph.lstm_cell import LstmCell, match_lstm_cell, prove_lstm_cell
from tflgraph.pipeline import Pass, has_side_effects, register
from tflgraph.schema import new_options
from tflgraph.targets import supports

FUSED_ACTIVATION = {"TANH": 4, "RELU": 1}  # ActivationFunctionType codes
_EMITS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "FILL",
    "RESHAPE",
    "STRIDED_SLICE",
    "TRANSPOSE",
    "REVERSE_V2",
)


@register("fuse-lstm")
class FuseLstm(Pass):
    """Fuse WHILE-loop LSTMs (Keras 3, tf_keras RNN(LSTMCell)) into UNIDIRECTIONAL_SEQUENCE_LSTM."""

    stateful_streaming = False

    def run(self, model: Model) -> bool:
        self.stats = {"loops_fused": 0, "layers": []}
        for sg in list(model.subgraphs):
            for op in while_loops(sg):
                self.stats["loops_fused"] += self._fuse(sg, op)
        return bool(self.stats["loops_fused"])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """Readable lines for the optimize summary: one per fused loop."""
        return stats.get("layers", [])

    def _fuse(self, sg: Subgraph, op: Operator) -> bool:
        loop = analyze_loop(sg, op, self.explain)
        loop = with_static_accumulator(loop) if loop is not None else None  # any pass order
        cell = match_lstm_cell(loop, self.explain) if loop is not None else None
        if cell is None:
            return False
        why = self._unsupported_use(loop, cell) or prove_lstm_cell(loop, cell)
        if why is not None:
            self.explain(f"{loop.name}: left alone: {why}")
            return False
        _Rewrite(loop, cell, self.stateful_streaming).apply()
        seq = loop.acc_kind == "sequence"
        self.stats["layers"].append(
            f"{loop.name}: T={loop.trip_count} F={loop.x_t.shape[-1]} u={cell.units} "
            f"B={loop.batch} {cell.activation.lower()} -> UNIDIRECTIONAL_SEQUENCE_LSTM"
            f"{' (whole sequence)' if seq else ''}"
        )
        return True

    def _unsupported_use(self, loop: RnnLoop, cell: LstmCell) -> str | None:
        """Why the loop's results or inputs cannot be reproduced by the fused op, or None."""
        sg = loop.sg
        missing = [op for op in _EMITS if not supports(self.target, op)]
        if missing:
            return f"target {self.target} lacks {', '.join(missing)}"
        if cell.activation != "TANH" and self.target != "litert":
            return (
                f"activation {cell.activation.lower()}: TFLM's fused LSTM then computes "
                "c' = f*c + i*g and h' = o*tanh(c') (measured), not Keras' relu; fused for "
                "--target litert only"
            )
        if any(sg.is_used(c.result) for c in loop.counters):
            return "a loop counter is read after the loop"
        operands, state_shape = (loop.seq.init, cell.h.init, cell.c.init), (loop.batch, cell.units)
        if any(t.type != 0 for t in operands):  # FLOAT32
            return "not float32"
        if loop.seq.init.shape[0] != loop.trip_count:
            return "the loop does not run over the whole sequence"
        if any(t.shape != state_shape for t in operands[1:]):
            return f"the initial states are not [batch, units] = {list(state_shape)}"
        if any(t.is_dynamic for t in operands):
            return "dynamic shapes (the fused op's state tensors need a static batch)"
        if loop.acc is not None and loop.acc_kind == "last":
            readers = sg.consumers(loop.acc.result)
            if loop.acc.result in sg.outputs or not all(is_last_step_slice(p, 1) for p in readers):
                return "the last-step accumulator is read other than as acc[-1]"
        for state in (cell.h, cell.c):
            if state.init.is_variable and _state_source(sg, state.init, loop.op) is None:
                return "an initial state is a variable tensor that another op also updates"
        if sg.is_used(cell.c.result):
            after = _reachable(sg, [cell.h.result] + ([loop.acc.result] if loop.acc else []))
            if any(p not in after for p in sg.consumers(cell.c.result)):
                return (
                    "the final cell state c feeds an op that does not also depend on the "
                    "loop's output, so it cannot read the fused op's in-place c"
                )
        return None


class _Rewrite:
    """Build the fused op for one proven loop and move every reader of the loop onto it."""

    def __init__(self, loop: RnnLoop, cell: LstmCell, streaming: bool):
        self.loop, self.cell, self.streaming, self.sg = loop, cell, streaming, loop.sg
        self.base = _layer_name(loop.op.outputs[0].name)
        self._fill: list[Tensor] | None = None

    def apply(self) -> None:
        loop, cell, sg = self.loop, self.cell, self.sg
        src = batch_major_source(sg, loop.seq.init)
        self.time_major = src is None or src[0].shape[1] != loop.trip_count
        x = loop.seq.init if self.time_major else src[0]
        if not self.time_major and src[1]:  # go_backwards: reverse the batch-major input
            x = self._reversed_in_time(x)
        units, batch, steps = cell.units, loop.batch, loop.trip_count
        shape = (steps, batch, units) if self.time_major else (batch, steps, units)
        self.y = sg.new_tensor(f"{self.base}/lstm", shape)
        # the gate blocks i|f|c|o of W, U and b become operands 1-4, 5-8 and 12-15
        w, u, b = ([self._const(a[k * units : (k + 1) * units], f"{n}{g}") for k, g in _GATES]
                   for a, n in ((cell.W, "W"), (cell.U, "U"), (cell.b, "b")))  # fmt: skip
        h_var, self.c_var = self._state(cell.h.init, "h"), self._state(cell.c.init, "c")
        states = [h_var, self.c_var]
        inputs = [x, *w, *u, None, None, None, *b, None, None, *states, None, None, None, None]
        options = new_options(
            "UnidirectionalSequenceLSTMOptions", cell_clip=0.0, proj_clip=0.0,
            fused_activation_function=FUSED_ACTIVATION[cell.activation], time_major=self.time_major,
        )  # fmt: skip
        sg.add_op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [self.y], options)
        self._move_readers()
        _drop_dead(sg, loop.op)  # now, as a WHILE reading a variable tensor counts as stateful

    def _move_readers(self) -> None:
        loop, cell, sg, y = self.loop, self.cell, self.sg, self.y
        if loop.acc is not None and loop.acc_kind == "last":
            for p in sg.consumers(loop.acc.result):
                replace_result(sg, p.outputs[0], self._last_step())
        elif loop.acc is not None:
            for p in sg.consumers(loop.acc.result):  # back to batch-major: y itself
                if not self.time_major and swaps_time_batch(p) and p.outputs[0].shape == y.shape:
                    replace_result(sg, p.outputs[0], y)
            if sg.is_used(loop.acc.result):
                replace_result(sg, loop.acc.result, self._time_major_y())
        if sg.is_used(cell.h.result):
            replace_result(sg, cell.h.result, self._last_step())
        if sg.is_used(cell.c.result):
            replace_result(sg, cell.c.result, self.c_var)
        for o in loop.sequences + loop.invariants:
            if sg.is_used(o.result):
                replace_result(sg, o.result, o.init)

    def _const(self, array: np.ndarray, name: str) -> Tensor:
        return self.sg.new_constant(np.ascontiguousarray(array, np.float32), f"{self.base}/{name}")

    def _state(self, init: Tensor, name: str) -> Tensor:
        """The variable tensor the fused op keeps state `name` in, (re)set from `init`."""
        sg = self.sg
        shared = _state_source(sg, init, self.loop.op) if init.is_variable else None
        if shared is not None:
            return shared
        if self._own_output(init):
            init.is_variable = True  # its producer writes it anew every invoke
            return init
        var = sg.new_tensor(f"{self.base}/{name}", init.shape, is_variable=True)
        zeros = init.is_constant and init.data is not None and not np.any(init.data)
        if zeros and self.streaming:
            return var
        if zeros:
            sg.add_op("FILL", self._fill_operands(init.shape), [var])
        else:
            sg.add_op("RESHAPE", [init], [var], {"new_shape": list(init.shape)})
        return var

    def _own_output(self, init: Tensor) -> bool:
        """True if `init` is computed by an op for this loop alone (a decoder's h0 = the
        encoder's last step), so it can be the variable tensor itself, with no copy."""
        sg, producer = self.sg, self.sg.producer(init)
        return (
            producer is not None
            and producer.type not in _MAY_ALIAS
            and sg.consumers(init) == [self.loop.op]
            and not any(init is t for t in sg.outputs)
            and self.cell.h.init is not self.cell.c.init
        )

    def _fill_operands(self, shape) -> list[Tensor]:
        """FILL's operands (shape, 0.0), shared by both states: a few bytes, whatever u is."""
        if self._fill is None:
            self._fill = [
                self.sg.new_constant(np.array(shape, np.int32), f"{self.base}/shape"),
                self.sg.new_constant(np.array(0, np.float32), f"{self.base}/zero"),
            ]
        return self._fill

    def _last_step(self) -> Tensor:
        """STRIDED_SLICE(y) at the last step, time axis shrunk: [B, u]."""
        sg, y = self.sg, self.y
        axis = 0 if self.time_major else 1
        begin = np.zeros(3, np.int32)
        begin[axis] = -1
        out = sg.new_tensor(f"{self.base}/last", (y.shape[1 - axis], y.shape[2]))
        mask = 0b111 & ~(1 << axis)
        ends = [(begin, "begin"), (np.zeros(3, np.int32), "end"), (np.ones(3, np.int32), "step")]
        consts = [sg.new_constant(v, f"{self.base}/{name}") for v, name in ends]
        options = {"begin_mask": mask, "end_mask": mask, "shrink_axis_mask": 1 << axis}
        sg.add_op("STRIDED_SLICE", [y, *consts], [out], options)
        return out

    def _reversed_in_time(self, x: Tensor) -> Tensor:
        """REVERSE_V2(x [B, T, F], axis 1): the loop read REVERSE_V2(time-major x, axis 0)."""
        out = self.sg.new_tensor(f"{self.base}/reversed", x.shape)
        axis = self.sg.new_constant(np.array([1], np.int32), f"{self.base}/time_axis")
        self.sg.add_op("REVERSE_V2", [x, axis], [out])
        return out

    def _time_major_y(self) -> Tensor:
        """y as [T, B, u] (TRANSPOSE when y is batch-major)."""
        sg, y = self.sg, self.y
        if self.time_major:
            return y
        out = sg.new_tensor(f"{self.base}/time_major", (y.shape[1], y.shape[0], y.shape[2]))
        perm = sg.new_constant(np.array([1, 0, 2], np.int32), f"{self.base}/perm")
        sg.add_op("TRANSPOSE", [y, perm], [out])
        return out


_GATES = list(enumerate("ifco"))
# ops whose output a runtime may place on the input's memory: never make those variable
_MAY_ALIAS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "BITCAST"}


def _state_source(sg: Subgraph, var: Tensor, loop_op: Operator) -> Tensor | None:
    """`var` if it is the in-place state of one fused op whose output the loop depends on, that
    nothing else reads and that an op resets every invoke: the loop can then continue from it
    (an encoder's final c)."""
    if sg.producer(var) is None:  # a streaming state: the loop would carry into the next invoke
        return None
    readers = [p for p in sg.consumers(var) if p is not loop_op]
    fused = readers[0] if len(readers) == 1 else None
    if fused is None or fused.type != "UNIDIRECTIONAL_SEQUENCE_LSTM" or var in sg.outputs:
        return None
    return var if loop_op in _reachable(sg, [fused.outputs[0]]) else None


def _layer_name(while_output: str) -> str:
    """A short name for the new tensors: 'lstm_1' for 'functional_1/lstm_1/while'. Short
    names keep the file no larger than the converter's own fused LSTM."""
    parts = [p for p in while_output.split(":")[0].split("/") if p]
    if len(parts) > 1 and parts[-1].startswith("while"):
        parts.pop()
    return parts[-1] if parts else "lstm"


def _drop_dead(sg: Subgraph, op: Operator) -> None:
    """Remove the replaced WHILE `op` and the readers of its outputs that are now dead (the
    old acc[-1] slices and transposes), unless a reader has side effects."""
    for t in op.outputs:
        for p in sg.consumers(t) if t is not None else ():
            if not has_side_effects(p):
                _drop_dead(sg, p)
    if not any(t is not None and sg.is_used(t) for t in op.outputs):
        sg.remove_op(op)


def _reachable(sg: Subgraph, tensors: list[Tensor]) -> set[Operator]:
    """Every op that depends on one of `tensors`."""
    seen: set[Operator] = set()
    stack = list(tensors)
    while stack:
        for p in sg.consumers(stack.pop()):
            if p not in seen:
                seen.add(p)
                stack.extend(t for t in p.outputs if t is not None)
    return seen
