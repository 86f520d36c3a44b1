"""What a model costs on a microcontroller, as TFLM itself counts it, and the objectives that
decide whether an optimized model may cost more than its input.

`footprints(models)` allocates every model in one forked child process (tflite-micro, in a
generous arena) and reads `print_allocations`: the bytes its recording allocator used in total
and per category (tensor data, persistent buffers, node structs, ...). That total is the
arena figure tflgraph compares: what a C++ application needs, but for its interpreter's own
bookkeeping. One allocation per model, not tflm_check.smallest_arena's bisection: measured on
the fixtures, allocating takes 0.05-0.15 s in a child, a bisection 0.7-1.5 s (which would
double the time of `optimize`); both figures agree but for models whose WHILE bodies need
scratch the recording does not count (k3_lstm: total 6,976, smallest arena 8,784 bytes).

Objectives (`optimize --objective`): what must not grow from the input to the output.
    balanced (default)  the TFLM arena not by a byte, the file by at most 1%
    ram                 the TFLM arena
    size                the file, not by a byte
    latency             nothing is measured against the input (the passes aim at time)
The file is compared with the input as tflgraph's writer saves it (tflgraph.objective), so
that aligning buffers, which the schema asks and the converter does not do, is no growth;
balanced lets a pass add a few bytes (a plugin's metadata, a rewrite's op tables) but no RAM.
Time is not measured here: an invoke time is noisy on a shared machine and would make the
output depend on the machine's load; the passes that trade time keep their own measured
limits (fuse-lstm's litert rule, chunk-sequence-lstm's chunk count), and benchmarks/ram.py
measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tflgraph.runtime import runtimes
from tflgraph.runtime.runtimes import RuntimeUnavailable, call_isolated, captured_output
from tflgraph.runtime.tflm_check import allocates, parse_allocations, tflm_message

# measure -> how much it may grow, as a fraction of the input's
OBJECTIVES: dict[str, dict[str, float]] = {
    "balanced": {"arena": 0.0, "bytes": 0.01},
    "ram": {"arena": 0.0},
    "size": {"bytes": 0.0},
    "latency": {},
}


@dataclass
class Footprint:
    """A model's file size and TFLM arena (None when TFLM was not asked or cannot allocate)."""

    bytes: int
    arena: int | None = None
    allocations: dict[str, int] = field(default_factory=dict)  # print_allocations, bytes
    why: str = ""  # why there is no arena figure
    asked: bool = True  # False: tflite-micro is not installed, or the target is not TFLM

    def to_dict(self) -> dict:
        return asdict(self)

    def arena_text(self) -> str:
        return f"{self.arena:,}" if self.arena is not None else f"- ({self.why})"


def footprints(models: list[bytes], timeout: float = 60.0) -> list[Footprint]:
    """The footprint of each model: file size, and TFLM's arena when tflite-micro is installed
    (all allocated in one child process; if that child crashes, one child per model)."""
    if not runtimes.available("tflm"):
        return [Footprint(len(d), why="tflite-micro is not installed", asked=False) for d in models]
    try:
        said = call_isolated(_allocate_all, (models,), "tflm", timeout * len(models))
    except RuntimeUnavailable:
        if len(models) == 1:
            said = [None]
        else:
            return [footprints([d], timeout)[0] for d in models]
    return [_footprint(len(d), log) for d, log in zip(models, said)]


def _footprint(size: int, log: list[str] | None) -> Footprint:
    if log is None:
        return Footprint(size, why="TFLM crashed while allocating it")
    allocations = parse_allocations(log)
    if "total" not in allocations:
        return Footprint(size, why=f"TFLM cannot allocate it: {tflm_message(log)}")
    return Footprint(size, allocations["total"], allocations)


def _allocate_all(models: list[bytes]) -> list[list[str]]:
    """In the child: TFLM's log of allocating each model (with print_allocations if it did)."""
    logs = []
    for data in models:
        with captured_output() as said:
            allocates(data, runtimes.arena_for(data), report=True)
        logs.append(said)
    return logs


def regressions(before: Footprint, after: Footprint, objective: str) -> list[str]:
    """What grew from `before` to `after` beyond what `objective` allows, in words (empty:
    nothing). An input that TFLM was asked about and cannot allocate has nothing to lose:
    whatever the passes made of it (legalization for TFLM grows files, e.g. float16-weights)
    is kept."""
    out = []
    allowed = OBJECTIVES[objective]
    if before.arena is None and before.asked:
        return out
    if "arena" in allowed and before.arena is not None and after.arena is not None:
        if after.arena > before.arena * (1 + allowed["arena"]):
            out.append(f"TFLM arena {before.arena:,} -> {after.arena:,} bytes")
    if "bytes" in allowed and after.bytes > before.bytes * (1 + allowed["bytes"]):
        more = f" (more than {allowed['bytes']:.0%})" if allowed["bytes"] else ""
        out.append(f"file {before.bytes:,} -> {after.bytes:,} bytes{more}")
    return out
