"""Replace a proven recurrent WHILE loop (tflgraph.rnn.loops.RnnLoop) by one fused sequence op.

Shared by fuse-lstm (UNIDIRECTIONAL_SEQUENCE_LSTM) and fuse-simple-rnn
(UNIDIRECTIONAL_SEQUENCE_RNN). `FusedRnnRewrite.apply` builds

    y = OP(x, <weights>, <state variables>)     # x batch-major when the caller transposed a
                                                # [B, T, F] input into the loop, else time-major

and moves every reader of the loop onto y: acc[-1] and the final h -> STRIDED_SLICE(y)[last
step], the whole sequence -> y (the RESHAPE/TRANSPOSE to and from time-major fold away), the
final c -> the in-place cell state. A subclass names the op and builds its operands
(`operands`), using `const` for weights and `state` for the variable state tensors, which
are re-set from the loop's initial state at the start of every invoke (unless streaming).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import networkx as nx
import numpy as np

from tflgraph.ir import Operator, Subgraph, Tensor
from tflgraph.pipeline import has_side_effects
from tflgraph.rnn.loops import (
    RnnLoop,
    batch_major_source,
    is_last_step_slice,
    replace_result,
    swaps_time_batch,
)

# ops whose output a runtime may place on the input's memory: never make those variable
_MAY_ALIAS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "BITCAST"}


class FusedRnnRewrite(ABC):
    """Build the fused op for one proven loop and move every reader of the loop onto it.

    `cell` has states `h` and `c` (tflgraph.rnn.loops.Operand; `c` is `h` for a cell without a
    cell state), `units` and `activation`. A subclass sets `op_type`, `suffix` (y's name is
    <layer>/<suffix>), `reverses` (True: a go_backwards batch-major input is fed through
    REVERSE_V2; False: such a loop reads the time-major sequence) and implements `operands`.
    """

    op_type: str
    suffix: str
    reverses: bool

    def __init__(self, loop: RnnLoop, cell, streaming: bool):
        self.loop, self.cell, self.streaming, self.sg = loop, cell, streaming, loop.sg
        self.base = _layer_name(loop.op.outputs[0].name)
        self.c_var: Tensor | None = None  # the in-place cell state, set by `operands` if any
        self._fill: list[Tensor] | None = None

    @abstractmethod
    def operands(self, x: Tensor) -> tuple[list[Tensor | None], dict]:
        """The fused op's inputs (x first) and options; `self.time_major` is set."""

    def apply(self) -> None:
        """Add the fused op, move the loop's readers onto it and remove the loop."""
        loop, sg = self.loop, self.sg
        src = batch_major_source(sg, loop.seq.init)
        self.time_major = (
            src is None or (src[1] and not self.reverses) or src[0].shape[1] != loop.trip_count
        )
        x = loop.seq.init if self.time_major else src[0]
        if not self.time_major and src[1]:  # go_backwards: reverse the batch-major input
            x = self._reversed_in_time(x)
        units, batch, steps = self.cell.units, loop.batch, loop.trip_count
        shape = (steps, batch, units) if self.time_major else (batch, steps, units)
        self.y = sg.new_tensor(f"{self.base}/{self.suffix}", shape)
        inputs, options = self.operands(x)
        sg.add_op(self.op_type, inputs, [self.y], options)
        self._move_readers()
        drop_dead(sg, loop.op)  # now, as a WHILE reading a variable tensor counts as stateful

    def const(self, array: np.ndarray, name: str) -> Tensor:
        """A float32 constant named <layer>/<name>."""
        return self.sg.new_constant(np.ascontiguousarray(array, np.float32), f"{self.base}/{name}")

    def state(self, init: Tensor, name: str) -> Tensor:
        """The variable tensor the fused op keeps state `name` in, (re)set from `init`."""
        sg = self.sg
        shared = state_source(sg, init, self.loop.op) if init.is_variable else None
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
            last = self._last_step()
            # the final h already is the state of a fused op after this loop (a decoder fused
            # first, see `_own_output`): the slice that replaces it must stay a variable tensor
            last.is_variable = cell.h.result.is_variable
            replace_result(sg, cell.h.result, last)
        if sg.is_used(cell.c.result):  # (never when c is h: its readers have just moved)
            replace_result(sg, cell.c.result, self.c_var)
        for o in loop.sequences + loop.invariants:
            if sg.is_used(o.result):
                replace_result(sg, o.result, o.init)

    def _own_output(self, init: Tensor) -> bool:
        """True if `init` is computed by an op for this loop alone (a decoder's h0 = the
        encoder's last step), so it can be the variable tensor itself, with no copy. Not
        when every input of the producer is a constant: LiteRT may compute such an op once,
        at Prepare, into read-only memory (DEQUANTIZE of a float16 h0), and the state would
        then carry over into the next invoke."""
        sg, producer = self.sg, self.sg.producer(init)
        return (
            producer is not None
            and producer.type not in _MAY_ALIAS
            and any(t is not None and not t.is_constant for t in producer.inputs)
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


def last_step_read_only(loop: RnnLoop) -> bool:
    """False if the loop has a "last" accumulator that is a subgraph output or is read other
    than as acc[-1]: then the fused op's last step cannot stand in for it."""
    if loop.acc is None or loop.acc_kind != "last":
        return True
    sg = loop.sg
    readers = sg.consumers(loop.acc.result)
    return not any(loop.acc.result is t for t in sg.outputs) and all(
        is_last_step_slice(p, 1) for p in readers
    )


def state_source(sg: Subgraph, var: Tensor, loop_op: Operator) -> Tensor | None:
    """`var` if it is the in-place state of one fused op whose output the loop depends on, that
    nothing else reads and that an op resets every invoke: the loop can then continue from it
    (an encoder's final c)."""
    if sg.producer(var) is None:  # a streaming state: the loop would carry into the next invoke
        return None
    readers = [p for p in sg.consumers(var) if p is not loop_op]
    fused = readers[0] if len(readers) == 1 else None
    if fused is None or fused.type != "UNIDIRECTIONAL_SEQUENCE_LSTM" or var in sg.outputs:
        return None
    return var if nx.has_path(sg.graph, fused.outputs[0], loop_op) else None


def drop_dead(sg: Subgraph, op: Operator) -> None:
    """Remove the replaced WHILE `op` and the readers of its outputs that are now dead (the
    old acc[-1] slices and transposes), unless a reader has side effects. The pipeline's
    remove_dead_code would keep a WHILE that reads a variable tensor (it counts as stateful),
    which the loop does once its initial state has become the fused op's state."""
    for t in op.outputs:
        for p in sg.consumers(t) if t is not None else ():
            if not has_side_effects(p):
                drop_dead(sg, p)
    if not any(t is not None and sg.is_used(t) for t in op.outputs):
        sg.remove_op(op)


def reachable(sg: Subgraph, tensors: list[Tensor]) -> set[Operator]:
    """Every op that depends on one of `tensors`."""
    down = set().union(*(nx.descendants(sg.graph, t) for t in tensors if t in sg.graph))
    return {n for n in down if isinstance(n, Operator)}


def _layer_name(while_output: str) -> str:
    """A short name for the new tensors: 'lstm_1' for 'functional_1/lstm_1/while'. Short
    names keep the file no larger than the converter's own fused LSTM."""
    parts = [p for p in while_output.split(":")[0].split("/") if p]
    if len(parts) > 1 and parts[-1].startswith("while"):
        parts.pop()
    return parts[-1] if parts else "lstm"
