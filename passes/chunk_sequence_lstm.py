"""Run a fused LSTM whose output sequence is read only at its last step as several fused LSTMs
over chunks of steps, so that TFLM never holds the whole [B, T, u] sequence.

Pattern:   y = UNIDIRECTIONAL_SEQUENCE_LSTM(x, W_i..W_o, U_i..U_o, b_i..b_o, h, c) in float32,
           x [B, T, F] (or [T, B, F] time-major) static, y read only by STRIDED_SLICE ops
           that take its last step (time axis shrunk, every other axis whole), y no subgraph
           output; the state tensors h and c read by no other op.
Rewrite:   x is cut into parts x_j, the steps [t_j, t_j + k_j) that cover 0..T, either by one
           SPLIT_V(x) (SPLIT for equal parts) or by SLICE(x, t_j, k_j) before each chunk;
           then, chunk after chunk:
               y_j = UNIDIRECTIONAL_SEQUENCE_LSTM(x_j, W_i..W_o, U_i..U_o, b_i..b_o, h, c)
           and the last-step readers read y_n's last step.
Proof:     exact by construction. The kernel computes step t from x_t and the state it keeps
           in the variable tensors h and c, which persist from one op to the next as from one
           step to the next: chunk 1 starts from what h and c hold when it runs (the op that
           resets them every invoke still runs first, since every chunk reads its output),
           chunk j+1 continues from chunk j's final state, with the very same weight tensors
           (one buffer each). Same float operations in the same order: bit-identical outputs.
           The chunks run in the order they are added (the toposort breaks ties by insertion
           order, and reorder-for-memory keeps ops that share a variable tensor in order).
Cost:      while chunk j runs TFLM holds y_j, the kernel's four gate buffers [B, u] and what
           is left of x (all of x while a later SLICE reads it; the unconsumed parts after a
           SPLIT_V, which itself holds x twice while it runs), and every extra chunk costs
           CHUNK_BYTES of persistent data (its op data, nodes and tensors). Cut and sizes
           minimise that predicted arena against the peak of the rest of the graph
           (tflgraph.runtime.planner); a plan that saves nothing leaves the op alone. Time:
           measured flat in TFLM, 50 chunks of one step run as fast as one op
           (benchmarks/ram.md), so only the arena decides.
Invariant: every model output is bit-identical, invoke after invoke, under the same names.
"""

from __future__ import annotations

import copy

import numpy as np

from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.rnn.fused import C_STATE, H_STATE, is_last_step, time_axis
from tflgraph.rnn.loops import add_split
from tflgraph.runtime import planner
from tflgraph.runtime.targets import supports

# arena bytes one more chunk costs in TFLM (x86-64 build of tflite-micro 2026-10), measured on
# k3_lstm_big with 2 to 6 chunks: the fused LSTM's op data (~700) is most of it; the SLICE
# cut adds a node and a begin constant per chunk
CHUNK_BYTES = {"slice": 944, "split": 852}


@register("chunk-sequence-lstm")
class ChunkSequenceLstm(Pass):
    """Split a last-step-only fused LSTM into fused LSTMs over chunks of steps (less arena)."""

    def run(self, model: Model) -> bool:
        self.stats = {"lstms_chunked": 0, "layers": []}
        if self.target == "litert" or not all(
            supports(self.target, t) for t in ("SLICE", "SPLIT", "SPLIT_V")
        ):
            return False  # the arena is TFLM's: for LiteRT alone, one op is simpler
        for sg in model.subgraphs:
            for op in sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
                self.stats["lstms_chunked"] += self._chunk(sg, op)
        return bool(self.stats["lstms_chunked"])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        return stats.get("layers", [])

    def _chunk(self, sg: Subgraph, op: Operator) -> bool:
        why = _unsupported(sg, op)
        if why is not None:
            self.explain(f"{op.outputs[0].name}: left alone: {why}")
            return False
        x, y = op.inputs[0], op.outputs[0]
        axis = time_axis(op)
        cut, sizes, before, after = _plan(sg, op, axis)
        if len(sizes) == 1:
            self.explain(
                f"{y.name}: left alone: no chunking lowers the predicted arena ({before:,} bytes)"
            )
            return False
        last = _add_chunks(sg, op, axis, cut, sizes)
        for reader in sg.consumers(y):
            sg.set_input(reader, 0, last)
            begin = np.array(reader.inputs[1].data)
            if begin[axis] != -1:
                begin[axis] = -1
                sg.set_input(reader, 1, sg.new_constant(begin.astype(np.int32), "last_begin"))
        sg.remove_op(op)
        self.stats["layers"].append(
            f"{y.name}: T={x.shape[axis]} in {len(sizes)} chunks of {_sizes_text(sizes)} steps "
            f"({cut.upper()}{'_V' if cut == 'split' and len(set(sizes)) > 1 else ''} of x, "
            f"predicted arena {before:,} -> {after:,} bytes)"
        )
        return True


def _unsupported(sg: Subgraph, op: Operator) -> str | None:
    """Why the op cannot be chunked, or None."""
    x, y = op.inputs[0], op.outputs[0]
    if x is None or y is None or x.type_name != "FLOAT32" or y.type_name != "FLOAT32":
        return "not float32"
    if x.is_dynamic or y.is_dynamic or len(x.shape) != 3:
        return "not a static [B, T, F] sequence"
    axis = time_axis(op)
    if x.shape[axis] < 2:
        return "one step"
    if any(t is y for t in sg.outputs):
        return "the whole sequence is a model output"
    if not sg.consumers(y):
        return "nothing reads its sequence"
    if not all(is_last_step(p, y, axis) for p in sg.consumers(y)):
        return "the sequence is read other than at its last step"
    for i in (H_STATE, C_STATE):
        state = op.inputs[i]
        if state is None or not state.is_variable or sg.consumers(state) != [op]:
            return "a state tensor is read by another op"
        if any(t is state for t in sg.outputs):
            return "a state tensor is a model output"
    return None


def _plan(sg: Subgraph, op: Operator, axis: int) -> tuple[str, list[int], int, int]:
    """(how x is cut, chunk sizes, predicted arena of the op as it is, predicted chunked).

    While chunk j runs TFLM holds y_j, the gate scratch and what is left of x:
      "slice": x itself while a later chunk still slices it, and x_j;
      "split": the parts of x not yet consumed (SPLIT_V wrote them all at once, beside x:
               2|x| while the SPLIT_V runs, without the LSTM's scratch);
    and x itself throughout if another op reads it. For a peak P, taking as many steps as
    fit into each chunk in turn needs the fewest chunks; every P that chunk 1's size gives
    is tried, for both cuts, and the plan with the smallest max(P, rest of the graph) +
    CHUNK_BYTES per extra chunk wins."""
    x, y = op.inputs[0], op.outputs[0]
    steps, x_all = x.shape[axis], planner.nbytes(x)
    x_step, y_step = x_all // steps, planner.nbytes(y) // steps
    scratch = planner.scratch_bytes(op)
    fixed = scratch
    stays = any(t is x for t in sg.outputs) or any(p is not op for p in sg.consumers(x))
    fixed += x_all if stays else 0
    readers = set(sg.consumers(y)) | {op}
    order = sg.operators
    rest = max((b for o, b in zip(order, planner.live_bytes(sg, order)) if o not in readers),
               default=0)  # fmt: skip

    def fits(cut: str, peak: int, left: int) -> int:
        """The most steps the next chunk can take within `peak` with `left` steps to go."""
        if cut == "split":
            return (peak - fixed - x_step * left) // y_step
        whole = x_all if not stays else 0  # x is read by a later chunk
        last = (peak - fixed) // (x_step + y_step)
        return left if last >= left else min(last, (peak - fixed - whole) // (x_step + y_step))

    def greedy(cut: str, peak: int) -> list[int]:
        sizes, left = [], steps
        while left:
            k = min(left, fits(cut, peak, left))
            if k < 1:
                return []
            sizes.append(k)
            left -= k
        return sizes

    as_is = max(rest, x_all + y_step * steps + fixed - (x_all if stays else 0))
    best = ("", [steps], as_is)
    for cut, first_peak in (
        ("slice", lambda k: fixed + (0 if stays else x_all) + (x_step + y_step) * k),
        ("split", lambda k: max(fixed + x_all + y_step * k, fixed - scratch + 2 * x_all)),
    ):
        for first in range(1, steps):
            peak = first_peak(first)
            sizes = greedy(cut, peak)
            if sizes:
                arena = max(rest, peak) + CHUNK_BYTES[cut] * (len(sizes) - 1)
                if arena < best[2]:
                    best = (cut, sizes, arena)
    return best[0], best[1], as_is, best[2]


def _add_chunks(sg: Subgraph, op: Operator, axis: int, cut: str, sizes: list[int]) -> Tensor:
    """x cut into the chunks' parts, each followed by its fused LSTM, in order ("split": one
    SPLIT_V first); the last chunk's output."""
    x, y = op.inputs[0], op.outputs[0]
    base = y.name.split(":")[0]
    parts = [sg.new_tensor(f"{base}/x{j}", _with(x.shape, axis, k)) for j, k in enumerate(sizes)]
    if cut == "split":
        axis_t = sg.new_constant(np.array(axis, np.int32), f"{base}/time_axis")
        add_split(sg, x, axis_t, parts, sizes, f"{base}/chunk_steps")
    size_of: dict[int, Tensor] = {}
    out, start = y, 0
    for j, (x_j, k) in enumerate(zip(parts, sizes)):
        if cut == "slice":
            if k not in size_of:
                size = np.array(_with(x.shape, axis, k), np.int32)
                size_of[k] = sg.new_constant(size, f"{base}/chunk_size{k}")
            begin = np.array(_with((0, 0, 0), axis, start), np.int32)
            begin_t = sg.new_constant(begin, f"{base}/chunk_begin{j}")
            sg.add_op("SLICE", [x, begin_t, size_of[k]], [x_j])
        out = sg.new_tensor(f"{base}/chunk{j}", _with(y.shape, axis, k))
        sg.add_op(op.type, [x_j, *op.inputs[1:]], [out], copy.copy(op.options))
        start += k
    return out


def _with(shape, axis: int, k: int) -> tuple[int, ...]:
    return tuple(k if i == axis else d for i, d in enumerate(shape))


def _sizes_text(sizes: list[int]) -> str:
    """'8+8+8+8+18'."""
    return "+".join(map(str, sizes))
