"""Store sparse weights dense (TFLM has no DENSIFY and no sparse tensors).

Pattern:   DENSIFY(w) with w a sparse constant (SparsityParameters: traversal order, block
           map, DENSE / SPARSE_CSR dimension metadata; the converter's sparsity for pruned
           weights).
Rewrite:   a dense constant of the same type and shape; readers read it instead.
Exact:     DENSIFY only places the stored values at their indices and zeros elsewhere (no
           arithmetic); LiteRT does that once, at Prepare. The reference interpreter decodes
           the same metadata (kernels.sparse_to_dense).
Checked:   tests/passes/test_densify_weights.py: the sparse fixture gives the original's
           outputs bit for bit in LiteRT and runs in TFLM; a block-sparse constant decodes
           to the dense array it was built from.
Target:    only when the result must run on TFLM (`tflm`, `any`); `litert` keeps the sparse
           weights. The summary prints the size cost.
Invariant: every model output is bit-identical.
"""

from __future__ import annotations

from tflgraph.legalize import DecompressWeights
from tflgraph.pipeline import register


@register("densify-weights")
class DensifyWeights(DecompressWeights):
    """Fold DENSIFY of sparse constants into dense constants (for TFLM)."""

    op_type = "DENSIFY"
    what = "a sparse constant"

    def compressed(self, t) -> bool:
        return t.sparsity is not None
