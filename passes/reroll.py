"""Re-roll an unrolled RNN (`unroll=True`: T copies of one cell in a flat graph) into one loop.

Pattern:   x_0..x_{T-1} = UNPACK(seq [T, B, F], axis 0); T >= 3 chained copies of one cell,
           step t reading x_t and the previous step's values: the same ops with the same
           weights (one buffer or equal contents) in every middle step, the first step
           specialised as converters write it (zero state folded away); what leaves the chain
           is the last step's state (h, c) or PACK(y_0..y_{T-1}, axis 0)
           (tflgraph.rnn.reroll_find).
Rewrite:   (t, *states, [acc], seq) = WHILE(0, zeros, [FILL(0)], seq) whose body is one copy
           of the cell, x_t = GATHER(seq, t), the per-step output written with
           DYNAMIC_UPDATE_SLICE (tflgraph.rnn.reroll_loop): the form of a converter's loop
           after static-loop-outputs, so TFLM runs it; the last step's values -> the loop's
           state results, the PACK -> the accumulator. fuse-lstm (next in the default pipeline)
           then turns LSTM loops into UNIDIRECTIONAL_SEQUENCE_LSTM with its own proof, and
           fuse-simple-rnn SimpleRNN loops for LiteRT; GRU and other cells stay one loop.
Proof:     the loop starts from zero states while the converter's first step folded them; the
           chain's and the loop's outputs are evaluated on the reference interpreter on
           random inputs (tflgraph.reference.equivalence.check_equal, 1e-5 relative) and any
           difference leaves the graph as it was (restored from a snapshot), with the reason
           given to --explain.
Invariant: every model output equals the unrolled graph's within 1e-5; the model stays
           stateless (the loop's states are operands, not variable tensors); float32 only
           (an int8 chain has its own scales per step: left alone).
"""

from __future__ import annotations

from tflgraph.ir import Model, Operator, Snapshot, Subgraph
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import check_equal
from tflgraph.rnn.loops import replace_result
from tflgraph.rnn.reroll_find import find_unrolled, sequence_splits
from tflgraph.rnn.reroll_loop import build_loop
from tflgraph.runtime.targets import supports

_EMITS = ("WHILE", "LESS", "GATHER", "ADD", "DYNAMIC_UPDATE_SLICE", "PACK", "RESHAPE", "FILL")


@register("reroll")
class Reroll(Pass):
    """Re-roll unrolled RNN layers (T copies of one cell) into one WHILE loop."""

    def run(self, model: Model) -> bool:
        self.stats = {"chains_rerolled": 0, "layers": []}
        missing = [op for op in _EMITS if not supports(self.target, op)]
        if missing:
            self.explain(f"target {self.target} lacks {', '.join(missing)}")
            return False
        for sg in list(model.subgraphs):
            for split in sequence_splits(sg):
                if split in sg:  # (a re-rolled layer's UNPACK is gone)
                    self.stats["chains_rerolled"] += self._reroll(model, sg, split)
        return bool(self.stats["chains_rerolled"])

    @staticmethod
    def format_stats(stats: dict) -> list[str]:
        """Readable lines for the optimize summary: one per re-rolled chain."""
        return stats.get("layers", [])

    def _reroll(self, model: Model, sg: Subgraph, split: Operator) -> bool:
        where = f"UNPACK {split.inputs[0].name!r}"
        chain = find_unrolled(sg, split)
        if isinstance(chain, str):
            self.explain(f"{where}: not re-rolled: {chain}")
            return False
        if any(t.type_name != "FLOAT32" for t in (chain.x, *chain.states)):
            self.explain(f"{where}: not re-rolled: not float32 (int8 steps have their own scales)")
            return False
        snapshot = Snapshot(model)
        _, moved = build_loop(chain, _layer(split))
        olds = list(moved)
        why = check_equal(sg, olds, [moved[t] for t in olds])
        if why is not None:
            snapshot.restore()
            self.explain(f"{where}: not re-rolled: the loop is not the chain: {why}")
            return False
        for old in olds:
            replace_result(sg, old, moved[old])
        self.stats["layers"].append(
            f"{where}: {chain.steps} steps of {len(chain.body_ops)} ops -> one WHILE loop"
        )
        return True


def _layer(split: Operator) -> str:
    """The layer's name scope, 'functional_1/lstm_1' for the UNPACK of
    'functional_1/lstm_1/transpose;...': the loop is named '<scope>/while' like a converter's,
    so a fused op made of it gets the layer's short name."""
    parts = split.inputs[0].name.split(";")[0].split("/")
    return "/".join(parts[:-1]) or "reroll"
