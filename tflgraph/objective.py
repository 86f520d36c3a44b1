"""Keep what `optimize` writes within its objective: never a larger TFLM arena by default.

The pipeline's result is measured against its input (tflgraph.runtime.arena: TFLM's arena
and the file size, the objective naming which of them must not grow). When the result
breaks the objective, the pipeline is run again on the input, the model is serialized after
every pass that changed it, all those intermediate results are measured in one child
process, and the last one that keeps the objective is written instead; when none does, the
input itself (as it was loaded and saved, or its bytes as they were when even that grows).
So a pass that grows the arena is dropped together with the passes after it, but a pass
that grows it and a later one that shrinks it again (fuse-lstm, then chunk-sequence-lstm)
are kept together. The cost is one extra allocation per model, and a second pipeline run
only when the first result is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tflgraph.io.reader import load
from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model
from tflgraph.runtime.arena import Footprint, footprints, regressions
from tflgraph.runtime.targets import hybrid_layers

# the pipeline again on a fresh copy of the input, calling after_pass(name, model) after
# every pass
Rerun = Callable[[Callable[[str, Model], None]], None]


@dataclass
class Outcome:
    data: bytes  # what to write
    before: Footprint  # the input's
    after: Footprint  # what is written
    objective: str
    refused: list[str] = field(default_factory=list)  # what grew in the pipeline's result
    kept: str = "the whole pipeline"  # which result is written
    pass_runs: int | None = None  # how many pass runs that result has seen (None: all)

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "refused": self.refused,
            "kept": self.kept,
        }

    def lines(self) -> list[str]:
        """The arena line of the optimize summary, and what was refused, if anything."""
        b, a = self.before, self.after
        change = f" ({(a.arena - b.arena) / b.arena * 100:+.1f}%)" if b.arena and a.arena else ""
        out = [f"TFLM arena: {b.arena_text()} -> {a.arena_text()} bytes{change}"]
        if self.refused:
            out.append(
                f"objective {self.objective}: the pipeline's result was not kept "
                f"({'; '.join(self.refused)}); written: {self.kept}"
            )
        return out


def measured_for(target: str) -> bool:
    """Whether the arena is asked for: the output is meant to run in TFLM."""
    return target != "litert"


def keep_within(
    source: bytes, data: bytes, objective: str, target: str, rerun: Rerun, least_runs: int = 0
) -> Outcome:
    """The bytes to write for the pipeline's result `data` from the input `source`. The file
    is compared with `source` as tflgraph saves it (aligned buffers: no pass's doing), the
    arena with `source` itself. `least_runs`: the pass runs every written result must have
    seen (a pass option asked for a behaviour that results before them lack); when none of
    those results keeps the objective, the first of them is written."""
    asked = measured_for(target)
    original = load(source)
    saved = to_bytes(original)
    before, after = _measure([source, data], asked)
    before.bytes = len(saved)
    if asked and hybrid_layers(original):  # TFLM may allocate a hybrid LSTM: it computes junk
        before.arena, before.asked = None, True
        before.why = "TFLM has no hybrid kernels: it refuses or miscomputes int8-weight layers"
    grew = regressions(before, after, objective)
    if not grew:
        return Outcome(data, before, after, objective)
    candidates = [c for c in _intermediate_results(saved, rerun) if c[2] >= least_runs]
    measured = _measure([d for _, d, _ in candidates], asked)
    for (name, candidate, runs), fp in zip(reversed(candidates), reversed(measured)):
        if not regressions(before, fp, objective):
            return Outcome(candidate, before, fp, objective, grew, name, runs)
    if least_runs and candidates:  # the behaviour asked for comes first
        name, candidate, runs = candidates[0]
        kept = f"{name}, the first with what the pass options ask for"
        return Outcome(candidate, before, measured[0], objective, grew, kept, runs)
    return Outcome(source, before, before, objective, grew, "the input, unchanged", 0)


def _measure(models: list[bytes], asked: bool) -> list[Footprint]:
    """Footprints: file sizes, and the arena when `asked`."""
    if asked:
        return footprints(models)
    return [Footprint(len(d), why="not asked (target litert)", asked=False) for d in models]


def _intermediate_results(saved: bytes, rerun: Rerun) -> list[tuple[str, bytes, int]]:
    """(which result, its bytes, how many pass runs it has seen): the input as loaded and
    saved, then the result of every pass of the pipeline that changed the bytes, in order."""
    out = [("the input, loaded and saved (no pass)", saved, 0)]
    runs: dict[str, int] = {}

    def after_pass(name: str, model: Model) -> None:
        runs[name] = runs.get(name, 0) + 1
        data = to_bytes(model)
        if data != out[-1][1]:
            seen = sum(runs.values())
            out.append((f"the result after pass {name} (run {runs[name]})", data, seen))

    rerun(after_pass)
    return out
