"""Make every tensor shape static where the model's input shapes determine it.

Pattern:   tensors whose shape_signature has -1 (a batch-None model: the stored shape says
           [1, ...], the signature [-1, ...]), or whose stored shape is only a placeholder (the
           converter stores [1, 1] for a RESHAPE to a computed shape, and [] with has_rank
           false for a tensor of unknown rank).
Rewrite:   the inputs of the entry subgraphs take their stored shapes (the truth by the
           file's own word: LiteRT and TFLM allocate them so unless resized), or batch N on
           axis 0 where the signature says -1 there (option `batch`, `--pass-option
           freeze-shapes.batch=N`); for --target litert only with `batch` (LiteRT resizes
           a batch-None model's inputs at run time: that stays possible). Every tensor of
           every subgraph that then has one shape gets it as its static shape (no
           shape_signature, has_rank set); tensors that take several shapes (a loop
           accumulator that grows per step) keep theirs. A model
           whose entry subgraphs have no -1 anywhere (a fixed-batch model: only its loop
           bodies vary) is not evaluated at all, unless `batch` is set: running its loops
           would cost more than the whole default pipeline, to find nothing (0.6 s against
           0.3-0.4 s on the 18-loop k3_speech_18loops benchmark model).
Proof:     the reference interpreter runs the entry subgraphs on two seeded random feeds of
           those shapes and records every shape each tensor takes, in loop bodies once per
           step (tflgraph.reference.interpreter.observe_shapes). A tensor is frozen only if
           both feeds and every step agree on one shape: shapes computed from input values
           rather than from input shapes differ between the feeds and stay dynamic.
           Quantized ops run through the float kernels: their values mean nothing, their
           shapes are right. A model the interpreter cannot run (ops without a kernel, a
           batch the constants of the model do not fit) is left alone, but for its entry
           inputs when `batch` is 0 (their stored shapes are static by definition).
Invariant: every output equals the original's for inputs of the frozen shapes (nothing but
           shape fields changes); SHAPE and RANK of a frozen tensor become constant-foldable
           (fold-constants), and TFLM, which plans memory from the stored shapes, gets the
           right ones.
"""

from __future__ import annotations

import numpy as np

from tflgraph.ir import Model, Subgraph, Tensor
from tflgraph.pipeline import Option, Pass, register
from tflgraph.reference.interpreter import EvaluationError, UnsupportedOp, observe_shapes

SEEDS = (0, 1)


@register("freeze-shapes")
class FreezeShapes(Pass):
    """Give every tensor the static shape its model's input shapes (or a batch size) imply."""

    batch = Option(
        0,
        "freeze the batch axis (a -1 on axis 0 of an input's shape_signature) to this size; "
        "0: the inputs' stored shapes",
    )

    def run(self, model: Model) -> bool:
        if self.target == "litert" and not self.batch:
            self.explain("--target litert: the batch stays dynamic (LiteRT resizes inputs)")
            return False
        entries = list(dict.fromkeys([model.main, *(s.subgraph for s in model.signature_defs)]))
        inputs = {t: t.with_batch(self.batch) if self.batch else tuple(t.shape)
                  for sg in entries for t in sg.inputs}  # fmt: skip
        if not self.batch and not any(t.is_dynamic for sg in entries for t in sg.tensors):
            return False  # only loop bodies vary: their accumulators grow per step
        seen = self._observe(entries, inputs)
        if seen is None:
            if self.batch:
                return False
            seen = {t: {shape} for t, shape in inputs.items()}
        frozen = 0
        for t, shapes in seen.items():
            if len(shapes) == 1 and not t.is_constant and not t.is_variable:
                frozen += _freeze(t, next(iter(shapes)))
        self.stats = {"tensors_frozen": frozen}
        return bool(frozen)

    def _observe(self, entries: list[Subgraph], inputs: dict) -> dict | None:
        """Every shape each tensor takes on the seeded feeds, or None (explained) if the
        interpreter cannot run the model."""
        seen: dict[Tensor, set] = {}
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            for sg in entries:
                try:
                    feed = [_random(t, inputs[t], rng) for t in sg.inputs]
                    if any(x is None for x in feed):
                        self.explain(f"{sg.name}: an input of a dtype without random values")
                        return None
                    found = observe_shapes(sg, feed)
                except (EvaluationError, UnsupportedOp, ValueError, MemoryError) as e:
                    self.explain(f"{sg.name}: not evaluated on the frozen input shapes: {e}")
                    return None
                for t, shapes in found.items():
                    seen.setdefault(t, set()).update(shapes)
        return seen


def _freeze(t: Tensor, shape: tuple[int, ...]) -> bool:
    """Give `t` the static `shape`; True if a field changed. A tensor already static with this
    shape is left as it is (has_rank included: scalars made by passes do not set it)."""
    if tuple(t.shape) == shape and t.shape_signature is None:
        return False
    t.shape, t.shape_signature, t.has_rank = shape, None, True
    return True


def _random(t: Tensor, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
    """Seeded values of `t`'s dtype in `shape`: floats in [-1, 1), ints in [0, 4), bools."""
    if t.dtype is None:
        return None
    if t.dtype.kind == "f":
        return rng.uniform(-1, 1, shape).astype(t.dtype)
    if t.dtype.kind in "iu":
        return rng.integers(0, 4, shape).astype(t.dtype)
    if t.dtype.kind == "b":
        return rng.random(shape) < 0.5
    return None
