"""Fuse every WHILE loop that computes one LSTM step into one UNIDIRECTIONAL_SEQUENCE_LSTM.

Pattern:   a recurrent WHILE loop (tflgraph.rnn.loops: counters, GATHER(seq, t), accumulator,
           states h and c) whose body is one Keras LSTM step (tflgraph.rnn.lstm_cell: sigmoid
           gates i|f|c|o, tanh or relu activation, no mask).
Rewrite:   h0v, c0v = FILL([B, u], 0.0) twice       # or RESHAPE(h0) for a non-zero state
           y = UNIDIRECTIONAL_SEQUENCE_LSTM(x, W_i..W_o, U_i..U_o, b_i..b_o, h0v, c0v,
                                            cell_clip=0, time_major=x is time-major)
           acc[-1] and the final h -> STRIDED_SLICE(y)[last step]; the whole sequence -> y
           (the RESHAPE/TRANSPOSE to and from time-major fold away); the final c -> c0v,
           which the fused op updates in place.
Proof:     W, U and b are read from the body's FULLY_CONNECTED, ADD and SPLIT ops, or, for a
           body spelled otherwise (e.g. Keras 3 with dropout: one FULLY_CONNECTED per gate
           and side), by evaluating its gate pre-activations (tflgraph.rnn.probe), or, when
           even the roles of c' and h' are spelled otherwise (a sigmoid as 0.5 tanh(x/2) +
           0.5), by matching the whole step to the LSTM equations (tflgraph.rnn.cells); the body's
           h' and c' are evaluated with the reference interpreter on random x, h, c and
           compared with the LSTM equations (lstm_cell.prove_lstm_cell). Any mismatch, and any
           use of the loop that the rewrite cannot reproduce, leaves the loop alone;
           --explain names a loop that computes a GRU instead (tflgraph.rnn.cells.GRU).
Cost:      for --target litert only, `litert_keeps_loop` keeps the loops that LiteRT runs faster
           than the fused op (measured: its default XNNPACK delegate runs the loop's
           FULLY_CONNECTED ops, not the fused LSTM kernel); TFLM and "any" always fuse.
Invariant: every model output equals the loop's, invoke after invoke without reset: h0v and
           c0v are variable tensors that an op re-writes at the start of every invoke, so the
           fused op starts from the loop's initial state each time (LiteRT and TFLM both keep
           variable tensors across invokes otherwise). The option `stateful_streaming`
           (`--pass-option fuse-lstm.stateful_streaming=true`) drops those ops for loops
           starting from zeros: the state then carries over between invokes (chunked
           streaming), which changes outputs on purpose and is never the default.
           The opposite option, `reset_states`, is for fused LSTMs a converter wrote (tf_keras
           and TF 2.12-2.15 with a fixed batch): their states are variable tensors that only
           the op writes, so each invoke starts from the last one's final state, unlike the
           Keras model; with it such a state is re-zeroed by a FILL every invoke, giving the
           Keras outputs invoke after invoke (equal to the original after a reset, which is
           how it is verified).
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.schema import ACTIVATION_CODES, new_options
from tflgraph.ir import Model, Operator, Subgraph, Tensor
from tflgraph.pipeline import Option, Pass, register
from tflgraph.reference.hybrid import is_hybrid
from tflgraph.rnn.cells import GRU, LSTM, match_cell
from tflgraph.rnn.fused import C_STATE, H_STATE, kept_across_invokes, zeroed_every_invoke
from tflgraph.rnn.loops import RnnLoop, analyze_loop, while_loops, with_static_accumulator
from tflgraph.rnn.lstm_cell import LstmCell, match_lstm_cell, prove_lstm_cell
from tflgraph.rnn.probe import probe_lstm_cell
from tflgraph.rnn.rewrite import (
    FusedRnnRewrite,
    last_step_read_only,
    reachable,
    state_source,
)
from tflgraph.runtime.targets import supports

_EMITS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "FILL",
    "RESHAPE",
    "STRIDED_SLICE",
    "TRANSPOSE",
    "REVERSE_V2",
)


# why a loop with hybrid layers (int8 weights, float activations) stays a loop (measured in
# tests/passes/test_dequantize_hybrid.py)
HYBRID_BODY = (
    "its layers are hybrid (int8 weights, float activations): the converter gives each weight "
    "one scale per output channel, LiteRT's hybrid UNIDIRECTIONAL_SEQUENCE_LSTM reads one per "
    "tensor, so fusing would requantize the weights and change the outputs; --target tflm "
    "gives them float weights, which fuse"
)


@register("fuse-lstm")
class FuseLstm(Pass):
    """Fuse WHILE-loop LSTMs (Keras 3, tf_keras RNN(LSTMCell)) into UNIDIRECTIONAL_SEQUENCE_LSTM."""

    stateful_streaming = Option(
        False,
        "LSTMs that start from zeros keep their state across invokes (chunked streaming; "
        "changes outputs on purpose, so verified with a reset between samples only)",
        carries_state=True,
    )
    reset_states = Option(
        False,
        "fused LSTMs already in the file whose states carry over between invokes (the "
        "tf_keras / TF 2.15 converter's) start from zeros every invoke, as the Keras model "
        "does (equal to the original after a reset)",
        carries_state=True,
    )

    def run(self, model: Model) -> bool:
        self.stats = {"loops_fused": 0, "layers": [], "states_reset": 0}
        for sg in list(model.subgraphs):
            for op in while_loops(sg):
                self.stats["loops_fused"] += self._fuse(sg, op)
            if self.reset_states:
                self.stats["states_reset"] += self._reset_states(sg)
        return bool(self.stats["loops_fused"] or self.stats["states_reset"])

    def _reset_states(self, sg: Subgraph) -> int:
        """Re-zero, every invoke, the states of the fused LSTMs of `sg` that keep theirs
        across invokes; the number of states."""
        count = 0
        for op in sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
            for k in (H_STATE, C_STATE):
                if kept_across_invokes(sg, op, op.inputs[k]):
                    sg.set_input(op, k, zeroed_every_invoke(sg, op.inputs[k]))
                    count += 1
        if count:
            self.stats["layers"].append(f"{count} fused LSTM state(s) now zero every invoke")
        return count

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """Readable lines for the optimize summary: one per fused loop."""
        return stats.get("layers", [])

    def _fuse(self, sg: Subgraph, op: Operator) -> bool:
        loop = analyze_loop(sg, op, self.explain)
        loop = with_static_accumulator(loop) if loop is not None else None  # any pass order
        if loop is not None and any(is_hybrid(o) for o in loop.body.iter_ops()):
            self.explain(f"{loop.name}: left alone: {HYBRID_BODY}")
            return False
        cell = self._recognise(loop) if loop is not None else None
        if cell is None:
            return False
        why = self._unsupported_use(loop, cell) or prove_lstm_cell(loop, cell)
        if why is not None:
            self.explain(f"{loop.name}: left alone: {why}")
            return False
        if self.target == "litert":
            slower = litert_keeps_loop(
                loop.trip_count, loop.x_t.shape[-1], cell.units, loop.batch,
                loop.acc_kind == "sequence",
            )  # fmt: skip
            if slower is not None:
                self.explain(f"{loop.name}: kept as a loop for litert: {slower}")
                return False
        _LstmRewrite(loop, cell, self.stateful_streaming).apply()
        seq = loop.acc_kind == "sequence"
        self.stats["layers"].append(
            f"{loop.name}: T={loop.trip_count} F={loop.x_t.shape[-1]} u={cell.units} "
            f"B={loop.batch} {cell.activation.lower()} -> UNIDIRECTIONAL_SEQUENCE_LSTM"
            f"{' (whole sequence)' if seq else ''}"
        )
        return True

    def _recognise(self, loop: RnnLoop) -> LstmCell | None:
        """The loop's LSTM cell: from the converter's spelling (one SPLIT of FC + FC + b), else
        by evaluating the body (tflgraph.rnn.probe); says which path found it, or why none."""
        reasons: list[str] = []
        cell = match_lstm_cell(loop, reasons.append)
        if cell is not None:
            return cell
        cell = probe_lstm_cell(loop, reasons.append)
        if cell is not None:
            self.explain(
                f"{loop.name}: LSTM step recognised by evaluation (W, U, b read off the body; "
                f"its ops are not the converter's usual spelling: {reasons[0].split(': ', 1)[1]})"
            )
            return cell
        whole = self._by_whole_step(loop, reasons)
        if whole is not None:
            return whole
        said = set()
        for reason in reasons:  # a reason both recognisers give is said once
            if reason.replace("by evaluation: ", "") not in said:
                self.explain(reason)
                said.add(reason.replace("by evaluation: ", ""))
        if self.explanations is not None and match_cell(loop, GRU) is not None:
            self.explain(
                f"{loop.name}: a GRU step (recognised by evaluation): no fused GRU op exists "
                "in LiteRT or TFLM, so it stays a loop (static-loop-outputs makes it static)"
            )
        return None

    def _by_whole_step(self, loop: RnnLoop, reasons: list[str]) -> LstmCell | None:
        """The LSTM cell of a loop whose gates' activations or c', h' are spelled otherwise
        than LOGISTIC / TANH / MUL / ADD (so that neither recogniser above finds the roles):
        the LSTM equations as a whole (tflgraph.rnn.cells.LSTM), matched by evaluation."""
        if len(loop.sequences) != 1 or len(loop.states) != 2:
            return None
        match = match_cell(loop, LSTM, reasons.append)
        if match is None:
            return None
        self.explain(
            f"{loop.name}: LSTM step recognised by evaluating the whole step (its gates and "
            f"states are not spelled as the LSTM equations' ops: {reasons[0].split(': ', 1)[1]})"
        )
        gates = [match.gates[k] for k in "ifgo"]  # Keras' order, as match_lstm_cell reads it
        W, U, b = (np.concatenate([getattr(m, k) for m in gates]) for k in "WUb")
        return LstmCell(match.states["h"], match.states["c"], W, U, b, "TANH")

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
        if any(t.type_name != "FLOAT32" for t in operands):
            return "not float32"
        if loop.seq.init.shape[0] != loop.trip_count:
            return "the loop does not run over the whole sequence"
        if any(t.shape != state_shape for t in operands[1:]):
            return f"the initial states are not [batch, units] = {list(state_shape)}"
        if any(t.is_dynamic for t in operands):
            return "dynamic shapes (the fused op's state tensors need a static batch)"
        if not last_step_read_only(loop):
            return "the last-step accumulator is read other than as acc[-1]"
        if cell.h.init is cell.c.init and cell.h.init.is_variable:
            return "h0 and c0 are one variable tensor: the fused op would update it as both"
        for state in (cell.h, cell.c):
            if state.init.is_variable and state_source(sg, state.init, loop.op) is None:
                return "an initial state is a variable tensor that another op also updates"
        if sg.is_used(cell.c.result):
            after = reachable(sg, [cell.h.result] + ([loop.acc.result] if loop.acc else []))
            if any(p not in after for p in sg.consumers(cell.c.result)):
                return (
                    "the final cell state c feeds an op that does not also depend on the "
                    "loop's output, so it cannot read the fused op's in-place c"
                )
        return None


# per-step multiply-adds 4u(F+u) above which LiteRT runs the loop faster (batch 1)
LITERT_LOOP_ABOVE = {"last": 8192, "sequence": 24576}


def litert_keeps_loop(
    steps: int, features: int, units: int, batch: int, sequence: bool
) -> str | None:
    """Why LiteRT runs this LSTM faster as the WHILE loop than fused, or None to fuse.

    Rule (LiteRT 2.3.0, default delegates, one thread; `python benchmarks/rnn.py --litert-grid`,
    table "LiteRT: fused LSTM against the loop" in benchmarks/rnn.md): fused median invoke time
    over the loop's (the loop as the litert pipeline leaves it without fuse-lstm) on synthetic
    Keras-3 loops, T in {10, 50}, u in 8..256, F in {8, 40, 128}:
      batch 1, last step only, per-step multiply-adds m = 4u(F+u):
        m <= 7680: 0.66 .. 1.14, fused faster in 15 of 20 rows (all 10 at T=10);
        m >= 9216: 0.95 .. 2.38, 1.09 or more but for one T=10 tie (0.95 .. 1.04 over runs),
        e.g. 1.68 at T=10 F=40 u=128 and 2.38 at T=50 F=128 u=256;
      batch 1, whole sequence (the loop's accumulator costs more per step):
        m <= 20480: 0.56 .. 1.09; m >= 26624: 1.11 .. 1.48;
      batch 2 and 4: 0.99 .. 2.65, 1.08 or more but for one T=10 u=8 tie (the fused kernel
        takes the batch rows one by one when not time-major; the loop's FULLY_CONNECTED
        takes them at once).
    So the loop is kept above LITERT_LOOP_ABOVE and at any batch > 1, only where the fused op
    was measured slower or tied; fusing in the band below the limits costs at most 1.14x
    (T=50, m = 5120 .. 7680: T moves the break-even, but not across the limits).
    """
    del steps  # measured at T = 10 and 50: the limits hold for both
    if batch > 1:
        return (
            f"the fused LSTM kernel is slower than XNNPACK's FULLY_CONNECTED at batch {batch} "
            f"(u={units}, F={features}; measured 1.2-2.6x at batch 2 and 4)"
        )
    kind = "sequence" if sequence else "last"
    macs = 4 * units * (features + units)
    if macs > LITERT_LOOP_ABOVE[kind]:
        return (
            f"the fused LSTM kernel is slower than XNNPACK's FULLY_CONNECTED at u={units}, "
            f"F={features} (4u(F+u) = {macs} multiply-adds per step > "
            f"{LITERT_LOOP_ABOVE[kind]}{' for a whole-sequence output' if sequence else ''})"
        )
    return None


class _LstmRewrite(FusedRnnRewrite):
    """UNIDIRECTIONAL_SEQUENCE_LSTM for one proven loop (tflgraph.rnn.rewrite does the rest)."""

    op_type, suffix, reverses = "UNIDIRECTIONAL_SEQUENCE_LSTM", "lstm", True

    def operands(self, x: Tensor) -> tuple[list[Tensor | None], dict]:
        cell, units = self.cell, self.cell.units
        # the gate blocks i|f|c|o of W, U and b become operands 1-4, 5-8 and 12-15
        w, u, b = ([self.const(a[k * units : (k + 1) * units], f"{n}{g}") for k, g in _GATES]
                   for a, n in ((cell.W, "W"), (cell.U, "U"), (cell.b, "b")))  # fmt: skip
        h_var, self.c_var = self.state(cell.h.init, "h"), self.state(cell.c.init, "c")
        states = [h_var, self.c_var]
        inputs = [x, *w, *u, None, None, None, *b, None, None, *states, None, None, None, None]
        options = new_options(
            "UnidirectionalSequenceLSTMOptions", cell_clip=0.0, proj_clip=0.0,
            fused_activation_function=ACTIVATION_CODES[cell.activation], time_major=self.time_major,
        )  # fmt: skip
        return inputs, options


_GATES = list(enumerate("ifco"))
