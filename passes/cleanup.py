"""Remove what nothing needs and share identical constants.

Pattern:   ops whose outputs nobody reads and that have no side effects; tensors no op or
           subgraph input/output uses; subgraphs no reachable op or signature refers to;
           constant buffers with identical bytes.
Rewrite:   delete them; point tensors with identical constant data at one Buffer.
Invariant: every model output is computed exactly as before (nothing read is removed, and
           shared buffers are never written: passes make new constants instead).
"""

from __future__ import annotations

from tflgraph.io.writer import BufferTable
from tflgraph.ir import Model
from tflgraph.pipeline import Pass, register, remove_dead_code


@register("cleanup")
class Cleanup(Pass):
    """Remove dead ops, tensors and subgraphs; dedupe identical constant buffers."""

    def run(self, model: Model) -> bool:
        n_subgraphs = len(model.subgraphs)
        removed = remove_dead_code(model)
        shared = dedupe_buffers(model)
        self.stats = {
            "ops_removed": removed,
            "subgraphs_removed": n_subgraphs - len(model.subgraphs),
            "buffers_shared": shared,
        }
        return bool(removed or shared or n_subgraphs != len(model.subgraphs))


def dedupe_buffers(model: Model) -> int:
    """Point every tensor at the first Buffer with the same bytes (the writer's own dedupe
    table decides what is the same); return how many tensors moved."""
    table = BufferTable()
    moved = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_constant:
                keep = table.owners[table.index(t.buffer)]
                if keep is not t.buffer:
                    t.buffer = keep
                    moved += 1
    return moved
