"""Lower Flex TensorList ops (variant tensors) to a static buffer that builtin ops write and read.

Pattern:   a list made by FlexTensorListReserve(element_shape, n) or FlexTensorListFromTensor(x)
           and everything that list flows into: WHILE operands (through cond and body, whose
           body must hand the list back at the same operand), FlexTensorListSetItem,
           FlexTensorListGetItem, FlexTensorListStack and FlexTensorListLength. This is what a
           Keras loop on a batch-None input becomes with SELECT_TF_OPS and
           `_experimental_lower_tensor_list_ops = False`: Reserve -> WHILE(body: SetItem at the
           time counter) -> Stack.
Rewrite:   the list becomes a float [n, *element] tensor (the variant tensors are retyped):
           Reserve -> FILL(zeros), FromTensor(x) -> x, SetItem(l, i, v) ->
           DYNAMIC_UPDATE_SLICE(l, RESHAPE(v, [1, *element]), PACK(i, 0, ...)) (just the
           RESHAPE for a one-element list: Keras keeps only the last step so),
           GetItem(l, i) -> GATHER(l, i), Stack(l) -> l, Length(l) -> the constant n; the
           same TFLM-safe form static-loop-outputs writes, so fuse-lstm and the loop passes
           apply next. The element shape and dtype come from the tensors the list meets
           (element_shape operands with their -1 filled in by the items' static shapes).
Proof:     a list that is reserved and never set reads as zeros in TensorFlow, as the FILL does;
           SetItem/GetItem/Stack on a list of n equal-shaped elements are row writes and reads
           of the stacked tensor. The values leaving the list (Stack, GetItem, Length results
           in the subgraph of the Reserve) are evaluated on the reference interpreter, whose
           kernels model the TensorList ops (kernels_flex.py), before and after, on random
           inputs, and must be identical; otherwise the rewrite is undone.
Refused:   (--explain) a list used by any other op, a WHILE cond/body shared with another
           op, a body that does not return the list at its operand, element shapes that stay
           unknown or disagree, or values that cannot be checked.
Invariant: outputs are bit-identical on the reference interpreter; no variant tensor is left
           in a lowered list; the ops emitted run in LiteRT and TFLM.
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.schema import tensor_type_of
from tflgraph.ir import Model, Operator, Snapshot, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import compare, random_feed, region_inputs
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.rnn.loops import const_value, subgraph_users
from tflgraph.runtime.targets import supports

FLEX = "CUSTOM:FlexTensorList"
ROOTS = (FLEX + "Reserve", FLEX + "FromTensor")
EMITTED = ("FILL", "DYNAMIC_UPDATE_SLICE", "RESHAPE", "PACK", "GATHER")


class _Refused(Exception):
    """The list has a use this pass does not lower (the message says which)."""


@register("lower-tensor-lists")
class LowerTensorLists(Pass):
    """Turn Flex TensorList ops into a static buffer with DYNAMIC_UPDATE_SLICE and GATHER."""

    def run(self, model: Model) -> bool:
        if not all(supports(self.target, t) for t in EMITTED):
            self.explain(f"target {self.target} lacks one of {', '.join(EMITTED)}")
            return False
        lowered = 0
        for sg in model.subgraphs:
            for root in sg.ops_of_type(*ROOTS):
                if root in sg:
                    lowered += self._lower(model, sg, root)
        self.stats = {"lists": lowered}
        return bool(lowered)

    def _lower(self, model: Model, sg: Subgraph, root: Operator) -> bool:
        name = root.outputs[0].name
        snapshot = Snapshot(model)
        try:
            uses, held = _web(model, sg, root.outputs[0])
            shape, dtype = _buffer_type(root, uses)
            leaving = [
                op.outputs[0]
                for s, op in uses
                if s is sg and op.type != "WHILE" and op.outputs[0].dtype is not None
            ]
            feeds = _feeds(sg, leaving)
            before = evaluate_tensors(sg, feeds, leaving) if leaving else []
            after = _rewrite(sg, root, uses, held, shape, dtype, leaving)
            got = evaluate_tensors(sg, feeds, after) if after else []
        except _Refused as e:
            snapshot.restore()
            self.explain(f"TensorList {name!r}: left alone: {e}")
            return False
        for a, b, t in zip(before, got, leaving):
            why = compare(a, b, rtol=0.0, what=repr(t.name))  # row copies: exact
            if why:
                snapshot.restore()
                self.explain(f"TensorList {name!r}: lowering not proved equal: {why}")
                return False
        return True


def _web(model: Model, sg: Subgraph, lst: Tensor):
    """(every (subgraph, op) the list value `lst` reaches, every (subgraph, tensor) holding
    it), through WHILE operands and SetItem results; raises _Refused at a use not lowered."""
    uses: list[tuple[Subgraph, Operator]] = []
    held: list[tuple[Subgraph, Tensor]] = []
    returned: set[int] = set()  # body outputs that hand the list back to the next step
    stack = [(sg, lst)]
    while stack:
        s, t = stack.pop()
        if any(t is x for _, x in held):
            continue
        held.append((s, t))
        if any(t is o for o in s.outputs) and id(t) not in returned:
            raise _Refused(f"{t.name!r} is an output of {s.name!r}")
        for op in s.consumers(t):
            if op.type == "WHILE":
                for _, nxt in _through_while(model, s, op, t, stack):
                    returned.add(id(nxt))
            elif op.type.startswith(FLEX) and op.inputs[0] is t and t not in op.inputs[1:]:
                if op.type == FLEX + "SetItem":
                    stack.append((s, op.outputs[0]))
            else:
                raise _Refused(f"{t.name!r} is read by {op.type}")
            if (s, op) not in uses:
                uses.append((s, op))
    if returned - {id(t) for _, t in held}:
        raise _Refused("a WHILE body returns another list at the list's operand")
    return uses, held


def _through_while(model: Model, s: Subgraph, op: Operator, t: Tensor, stack: list):
    """Push the tensors that hold list `t` in and after WHILE `op`; yield (body, the body
    output that returns it)."""
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    if subgraph_users(model, cond) != 1 or subgraph_users(model, body) != 1:
        raise _Refused("its WHILE cond or body is shared with another op")
    ks = [k for k, x in enumerate(op.inputs) if x is t]
    for k in ks:
        nxt = body.outputs[k]
        setter = body.producer(nxt)
        if nxt is not body.inputs[k] and (setter is None or setter.type != FLEX + "SetItem"):
            raise _Refused(f"the WHILE body does not return the list at operand {k}")
        stack.extend([(cond, cond.inputs[k]), (body, body.inputs[k]), (s, op.outputs[k])])
        yield body, nxt


def _buffer_type(root: Operator, uses) -> tuple[tuple[int, ...], np.dtype]:
    """The static [n, *element] shape and the dtype of the list's buffer."""
    elems, dtypes = [], []
    if root.type == FLEX + "FromTensor":
        n, x = root.inputs[0].shape[0], root.inputs[0]
        elems.append(tuple(x.shape[1:]))
        dtypes.append(x.dtype)
    else:
        n = const_value(root.inputs[1])
        if n is None or n.size != 1:
            raise _Refused("the number of elements is not a constant")
        n = int(n.reshape(()))
    for _, op in uses:
        if op.type == FLEX + "SetItem":
            elems.append(tuple(op.inputs[2].shape))
            dtypes.append(op.inputs[2].dtype)
        elif op.type == FLEX + "GetItem":
            elems.append(tuple(op.outputs[0].shape))
            dtypes.append(op.outputs[0].dtype)
        elif op.type == FLEX + "Stack":
            elems.append(tuple(op.outputs[0].shape[1:]))
            dtypes.append(op.outputs[0].dtype)
    hinted = [o.inputs[1] for _, o in uses if o.type.endswith(("Stack", "GetItem"))]
    for t in [root.inputs[0] if root.type.endswith("Reserve") else None, *hinted]:
        v = const_value(t) if t is not None else None
        if v is not None and v.ndim == 1 and v.size and any(e != () for e in elems):
            known = next(e for e in elems if e != ())
            if len(v) != len(known) or any(d >= 0 and d != k for d, k in zip(v, known)):
                raise _Refused(f"element_shape {v.tolist()} disagrees with {list(known)}")
    if not elems or len(set(elems)) != 1 or len({np.dtype(d) for d in dtypes if d}) != 1:
        raise _Refused(f"element shapes/dtypes unknown or differ: {sorted(set(elems))}")
    if any(d is None for d in dtypes):
        raise _Refused("an element has no numeric dtype")
    return (n, *elems[0]), np.dtype(dtypes[0])


def _feeds(sg: Subgraph, wanted: list[Tensor]) -> dict:
    rng = np.random.default_rng(0)
    region = {sg.producer(t) for t in wanted}
    frontier, ops = list(region), set()
    while frontier:
        op = frontier.pop()
        if op is None or op in ops:
            continue
        ops.add(op)
        frontier.extend(sg.producer(t) for t in op.inputs if t is not None)
    feeds = {}
    for t in region_inputs(sg, ops):
        v = random_feed(t, rng)
        if v is None:
            raise _Refused(f"cannot check: no random values for {t.type_name} {t.name!r}")
        feeds[t] = v
    return feeds


def _rewrite(sg: Subgraph, root: Operator, uses, held, shape, dtype, leaving) -> list[Tensor]:
    """Retype the tensors holding the list to the buffer and replace each op; the tensors
    that now hold the `leaving` values, in order."""
    code = tensor_type_of(dtype)
    for _, t in held:
        t.type, t.shape, t.shape_signature = code, shape, None
    lst = root.outputs[0]
    if root.type.endswith("Reserve"):
        dims = sg.new_constant(np.array(shape, np.int32), f"{lst.name}/shape")
        zero = sg.new_constant(np.zeros((), dtype), f"{lst.name}/zero")
        buf = sg.new_tensor(f"{lst.name}/buffer", shape, dtype)
        sg.add_op("FILL", [dims, zero], [buf])
    else:
        buf = root.inputs[0]
    sg.replace_all_uses(lst, buf)
    sg.remove_op(root)
    replaced = {}
    for s, op in reversed(uses):  # readers before writers: each op's results are unused
        if op.type == "WHILE":
            continue
        replaced[id(op.outputs[0])] = new = _builtin(s, op, shape, dtype)
        s.replace_all_uses(op.outputs[0], new, keep_name=True)
        s.remove_op(op)
    return [replaced[id(t)] for t in leaving]


def _builtin(s: Subgraph, op: Operator, shape, dtype) -> Tensor:
    """The builtin form of one TensorList op, added to `s`; its result."""
    lst, out = op.inputs[0], op.outputs[0]
    kind = op.type[len(FLEX) :]
    if kind == "Stack":
        return lst
    if kind == "Length":
        return s.new_constant(np.array(shape[0], out.dtype or np.int32), out.name)
    index = op.inputs[1]
    if index.shape != () or index.type_name != "INT32":
        raise _Refused(f"{op.type} index {index.name!r} is not an int32 scalar")
    new = s.new_tensor(f"{out.name}/lowered", shape if kind == "SetItem" else shape[1:], dtype)
    if kind == "GetItem":
        s.add_op("GATHER", [lst, index], [new], {"axis": 0})
        return new
    row_shape = s.new_constant(np.array((1, *shape[1:]), np.int32), f"{out.name}/row_shape")
    if shape[0] == 1:  # the only valid index is 0: the row is the whole buffer
        s.add_op("RESHAPE", [op.inputs[2], row_shape], [new], {"new_shape": list(shape)})
        return new
    zero = s.new_constant(np.zeros((), np.int32), f"{out.name}/zero")
    start = s.new_tensor(f"{out.name}/start", (len(shape),), "int32")
    s.add_op("PACK", [index] + [zero] * (len(shape) - 1), [start],
             {"values_count": len(shape), "axis": 0})  # fmt: skip
    row = s.new_tensor(f"{out.name}/row", (1, *shape[1:]), dtype)
    s.add_op("RESHAPE", [op.inputs[2], row_shape], [row], {"new_shape": [1, *shape[1:]]})
    s.add_op("DYNAMIC_UPDATE_SLICE", [lst, row, start], [new])
    return new
