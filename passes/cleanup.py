"""Remove what nothing needs and share identical constants.

Pattern:   ops whose outputs nobody reads and that have no side effects; tensors no op or
           subgraph input/output uses; subgraphs no reachable op or signature refers to;
           constant buffers with identical bytes.
Rewrite:   delete them; point tensors with identical constant data at one Buffer.
Invariant: every model output is computed exactly as before (nothing read is removed, and
           shared buffers are never written: passes make new constants instead).
"""

from __future__ import annotations

import hashlib

from tflgraph.ir import Buffer, Model
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
    """Point every tensor at the first Buffer with the same bytes; return how many moved."""
    first: dict[tuple[int, bytes], Buffer] = {}
    moved = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if not t.is_constant:
                continue
            key = (
                t.buffer.nbytes,
                hashlib.blake2b(memoryview(t.buffer.data).cast("B"), digest_size=16).digest(),
            )
            keep = first.setdefault(key, t.buffer)
            if keep is not t.buffer:
                t.buffer = keep
                moved += 1
    return moved
