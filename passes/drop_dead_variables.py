"""Remove resource variables whose value never reaches an output.

Pattern:   a resource variable: every VAR_HANDLE of the model with one (container,
           shared_name), whose handles only READ_VARIABLE and ASSIGN_VARIABLE ops of their own
           subgraph read, and whose every READ_VARIABLE value flows, through ops without side
           effects (tflgraph.pipeline.has_side_effects), only into ASSIGN_VARIABLEs of that
           same variable: never to a subgraph output, another variable or another side effect.
           Keras 3's dropout seed generator is one (READ_VARIABLE + 1 -> ASSIGN_VARIABLE per
           call, initialised by a CALL_ONCE subgraph): at inference it only counts calls.
Rewrite:   remove those VAR_HANDLE, READ_VARIABLE and ASSIGN_VARIABLE ops and the ops between
           them; a CALL_ONCE whose subgraph is then empty goes too (cleanup drops the
           subgraph).
Proof:     the variable's value is only read to compute its own next value, so no output and
           no other state depends on it, on any invoke: what remains computes the same values.
Invariant: every model output bit-identical, invoke after invoke. The variable itself is not
           observable from outside the interpreter (TFLite exposes no resource variables).
           Models with such a variable did not run in TFLM's Python interpreter ("Input index
           1 out of range"); without it they do.
"""

from __future__ import annotations

import networkx as nx

from tflgraph.ir import Model, Operator, Subgraph
from tflgraph.pipeline import Pass, has_side_effects, register


@register("drop-dead-variables")
class DropDeadVariables(Pass):
    """Remove resource variables that are only read to compute their own next value."""

    def run(self, model: Model) -> bool:
        removed = 0
        for key, handles in _variables(model).items():
            ops = _dead_traffic(handles, key)
            if ops is None:
                continue
            for sg, op in sorted(ops, key=lambda so: -so[0].operators.index(so[1])):
                sg.remove_op(op)
            removed += 1
            self.explain(f"resource variable {key[1]!r}: removed, nothing reads it for an output")
        calls = 0
        for sg in model.subgraphs if removed else ():
            for op in sg.ops_of_type("CALL_ONCE"):
                if not any(s.operators for s in op.subgraphs()):
                    sg.remove_op(op)
                    calls += 1
        self.stats = {"variables_removed": removed, "call_once_removed": calls}
        return bool(removed)


def _variables(model: Model) -> dict[tuple, list[tuple[Subgraph, Operator]]]:
    """(container, shared_name) -> every VAR_HANDLE op of that variable, with its subgraph."""
    out: dict[tuple, list] = {}
    for sg in model.subgraphs:
        for op in sg.ops_of_type("VAR_HANDLE"):
            key = (op.option("container") or "", op.option("shared_name") or "")
            out.setdefault(key, []).append((sg, op))
    return out


def _dead_traffic(handles: list, key: tuple) -> list[tuple[Subgraph, Operator]] | None:
    """Every op of the variable's traffic (handles, reads, writes and what lies between), or
    None if a value read from it may reach anything but its own ASSIGN_VARIABLEs."""
    ops = []
    for sg, handle in handles:
        (h,) = handle.outputs
        if h in sg.outputs or not key[1]:
            return None
        users = sg.consumers(h)
        if any(u.type not in ("READ_VARIABLE", "ASSIGN_VARIABLE") or h in u.inputs[1:]
               for u in users):  # fmt: skip
            return None  # the handle escapes (as a value, to a call, to another op)
        ops += [(sg, handle)] + [(sg, u) for u in users]
        for read in (u for u in users if u.type == "READ_VARIABLE"):
            for node in nx.descendants(sg.graph, read):
                if not isinstance(node, Operator):
                    if node in sg.outputs:
                        return None
                elif node.type == "ASSIGN_VARIABLE":
                    if node not in users:
                        return None  # written into another variable
                elif has_side_effects(node):
                    return None
                else:
                    ops.append((sg, node))
    return list(dict.fromkeys(ops))
