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
           (element_shape operands with their -1 filled in by the items' static shapes);
           each op's NodeDef (element_dtype, num_elements) must agree with them.
Proof:     a list that is reserved and never set reads as zeros in TensorFlow, as the FILL does;
           SetItem/GetItem/Stack on a list of n equal-shaped elements are row writes and reads
           of the stacked tensor (an index outside the list is an error in TensorFlow, where
           DYNAMIC_UPDATE_SLICE would clamp it: the interpreter's kernels raise, so a model
           that evaluates has none). Every value the list's ops hand to the rest of the
           Reserve's subgraph (Stack, GetItem, Length results, the WHILE's other results) is
           evaluated on the reference interpreter, whose kernels model the TensorList ops
           (kernels_flex.py), before and after, on seeded random inputs, and must be
           identical; otherwise the rewrite is undone. Hybrid layers (int8 weights, float
           activations: published dynamic-range models) compute, on both sides, the float
           layer with their dequantized weights: the rewrite leaves them as they are, so
           equal values through one deterministic function of their inputs show equal values
           through LiteRT's hybrid kernels too.
Refused:   (--explain) a list used by any other op, a WHILE cond/body shared with another
           op, a body that does not return the list at its operand, element shapes that stay
           unknown or disagree, or values that cannot be checked.
Invariant: outputs are bit-identical on the reference interpreter; no variant tensor is left
           in a lowered list; the ops emitted run in LiteRT and TFLM.
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.nodedef import NodeDefError, flex_node
from tflgraph.io.schema import tensor_type_of
from tflgraph.ir import Model, Operator, Snapshot, Subgraph, Tensor
from tflgraph.pipeline import Pass, register
from tflgraph.reference.equivalence import compare, random_feed, region_inputs
from tflgraph.reference.interpreter import EvaluationError, UnsupportedOp, evaluate_tensors
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
            # every value the list's ops give the rest of sg (the WHILE's other results too)
            leaving = [
                t for s, op in uses if s is sg for t in op.outputs if t.type_name != "VARIANT"
            ]
            feeds = _feeds(sg)
            before = evaluate_tensors(sg, feeds, leaving, hybrid_as_float=True)
            replaced = _rewrite(sg, root, uses, held, shape, dtype)
            after = [replaced.get(id(t), t) for t in leaving]
            got = evaluate_tensors(sg, feeds, after, hybrid_as_float=True)
        except (_Refused, EvaluationError, UnsupportedOp) as e:
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
                returned.update(id(x) for x in _through_while(model, s, op, t, stack))
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


def _through_while(model: Model, s: Subgraph, op: Operator, t: Tensor, stack: list) -> list:
    """Push the tensors that hold list `t` in and after WHILE `op` onto `stack`; the body
    outputs that return it to the next step."""
    cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
    if subgraph_users(model, cond) != 1 or subgraph_users(model, body) != 1:
        raise _Refused("its WHILE cond or body is shared with another op")
    returned = []
    for k in [k for k, x in enumerate(op.inputs) if x is t]:
        nxt = body.outputs[k]
        setter = body.producer(nxt)
        if nxt is not body.inputs[k] and (setter is None or setter.type != FLEX + "SetItem"):
            raise _Refused(f"the WHILE body does not return the list at operand {k}")
        stack.extend([(cond, cond.inputs[k]), (body, body.inputs[k]), (s, op.outputs[k])])
        returned.append(nxt)
    return returned


def _buffer_type(root: Operator, uses) -> tuple[tuple[int, ...], np.dtype]:
    """The static [n, *element] shape and the dtype of the list's buffer: the element is what
    SetItem writes, GetItem reads, Stack stacks (FromTensor splits), and must be the same
    static shape and dtype everywhere; element_shape operands (-1: any size) must agree."""
    if root.type == FLEX + "FromTensor":
        n = root.inputs[0].shape[0] if root.inputs[0].shape else None
    else:
        n = const_value(root.inputs[1])
        n = int(n.reshape(())) if n is not None and n.size == 1 else None
    if n is None:
        raise _Refused("the number of elements is not a constant")
    elements, hints = [], [root.inputs[1 if root.type.endswith("FromTensor") else 0]]
    for _, op in [(None, root), *uses]:
        kind = op.type[len(FLEX) :]
        if kind in ("FromTensor", "Stack"):
            t = op.inputs[0] if kind == "FromTensor" else op.outputs[0]
            elements.append((tuple(t.shape[1:]), t.dtype, t.is_dynamic))
        elif kind in ("SetItem", "GetItem"):
            t = op.inputs[2] if kind == "SetItem" else op.outputs[0]
            elements.append((tuple(t.shape), t.dtype, t.is_dynamic))
        hints.append(
            op.inputs[1] if kind == "Stack" else op.inputs[2] if kind == "GetItem" else None
        )
    if not elements or len({(e, d) for e, d, _ in elements}) != 1 or elements[0][1] is None:
        raise _Refused(
            f"element shapes/dtypes unknown or differ: {sorted({str(e) for e in elements})}"
        )
    shape, dtype, _ = elements[0]
    if any(dynamic for _, _, dynamic in elements):
        raise _Refused("an element shape is dynamic (freeze-shapes makes it static)")
    for v in (const_value(t) for t in hints if t is not None):
        if (
            v is not None
            and v.ndim == 1
            and (len(v) != len(shape) or any(d >= 0 and d != k for d, k in zip(v.tolist(), shape)))
        ):
            raise _Refused(f"element_shape {v.tolist()} disagrees with {list(shape)}")
    _check_node_defs([root, *(op for _, op in uses)], n, np.dtype(dtype))
    return (n, *shape), np.dtype(dtype)


def _check_node_defs(ops: list[Operator], n: int, dtype: np.dtype) -> None:
    """The TensorFlow ops' own word (their NodeDef attributes) must agree with the buffer the
    tensors imply: every element_dtype is `dtype`, a Stack's num_elements (-1: any) is n."""
    for op in ops:
        if not op.type.startswith(FLEX) or op.custom_options is None:
            continue  # a WHILE the list flows through, or an op without a NodeDef: no word
        try:
            node = flex_node(op.custom_options)
        except NodeDefError as e:
            raise _Refused(f"{op.type}: {e}") from None
        said = node.attrs.get("element_dtype")
        if said is not None and said != dtype.name:
            raise _Refused(f"{op.type}: its NodeDef says element_dtype {said}, not {dtype}")
        count = node.attrs.get("num_elements")
        if isinstance(count, int) and count >= 0 and count != n:
            raise _Refused(f"{op.type}: its NodeDef says num_elements {count}, not {n}")


def _feeds(sg: Subgraph) -> dict:
    """Seeded random values for every input `sg` reads (the model's inputs, for the main
    subgraph); _Refused when one is neither float nor bool (a loop counter, say)."""
    rng, feeds = np.random.default_rng(0), {}
    for t in region_inputs(sg, sg.operators):
        v = random_feed(t, rng)
        if v is None:
            raise _Refused(f"cannot check: no random values for {t.type_name} {t.name!r}")
        feeds[t] = v
    return feeds


def _rewrite(sg: Subgraph, root: Operator, uses, held, shape, dtype) -> dict[int, Tensor]:
    """Retype the tensors holding the list to the buffer and replace each TensorList op;
    {id(old result): the tensor that holds its value now}."""
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
    for s, op in uses:
        if op.type == "WHILE":
            continue
        replaced[id(op.outputs[0])] = new = _builtin(s, op, shape, dtype)
        s.replace_all_uses(op.outputs[0], new, keep_name=True)
        s.remove_op(op)
    return replaced


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
