"""The in-memory IR: Model, Subgraph, Tensor, Operator, Buffer.

A `Subgraph` wraps a `networkx.DiGraph` whose nodes are both operators and tensors; edges run
tensor -> op (the op reads it) and op -> tensor (the op writes it). Operand order lives on the
op (`op.inputs`, `None` for TFLite's optional -1), never in edge order. Passes mutate only
through the Subgraph API, which keeps the graph and the operand lists in step.

Control flow is explicit: an options field naming a subgraph (WHILE's `cond_subgraph_index`,
IF's branches, CALL_ONCE's init, ...) holds the `Subgraph` object itself.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.schema import (
    CUSTOM,
    NUMPY_DTYPES,
    OP_CODES,
    OP_NAMES,
    TENSOR_TYPE_NAMES,
    Options,
    RawTable,
    new_options,
    tensor_type_of,
)


class GraphError(TflgraphError, ValueError):
    """A mutation that would break the graph, or a broken invariant found by check()."""


class Buffer:
    """Constant bytes. `data` is a uint8 numpy array, usually a zero-copy view of the file."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray | bytes | None = None):
        if data is not None and not isinstance(data, np.ndarray):
            data = np.frombuffer(bytes(data), np.uint8)
        self.data = data

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else int(self.data.nbytes)

    def __repr__(self):
        return f"Buffer({self.nbytes} bytes)"


@dataclass(eq=False)
class Tensor:
    """A tensor of one subgraph. Constants have a `buffer` with data."""

    name: str = ""
    type: int = 0  # TFLite TensorType code
    shape: tuple[int, ...] = ()
    shape_signature: tuple[int, ...] | None = None
    buffer: Buffer | None = None
    quantization: dict | None = None  # QuantizationParameters fields (numpy arrays, scalars)
    is_variable: bool = False
    sparsity: dict | None = None
    has_rank: bool = False
    variant_tensors: list | None = None

    @property
    def dtype(self) -> np.dtype | None:
        return NUMPY_DTYPES.get(self.type)

    @property
    def type_name(self) -> str:
        return TENSOR_TYPE_NAMES.get(self.type, f"TYPE_{self.type}")

    @property
    def is_constant(self) -> bool:
        return self.buffer is not None and self.buffer.nbytes > 0

    @property
    def data(self) -> np.ndarray | None:
        """The constant value as a typed, shaped, read-only numpy view (None if not constant)."""
        if not self.is_constant or self.dtype is None or self.sparsity is not None:
            return None
        arr = self.buffer.data.view(self.dtype)
        return arr.reshape(self.shape) if arr.size == int(np.prod(self.shape)) else arr

    @property
    def is_dynamic(self) -> bool:
        return self.shape_signature is not None and any(d < 0 for d in self.shape_signature)

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.type_name}, {list(self.shape)})"


@dataclass(eq=False)
class Operator:
    """One operator. `opcode` is a builtin code; custom ops keep their name in `custom_code`."""

    opcode: int
    inputs: list = field(default_factory=list)  # list[Tensor | None]
    outputs: list = field(default_factory=list)  # list[Tensor | None]
    options: Options | RawTable | None = None
    options2: Options | RawTable | None = None
    custom_code: str | None = None
    version: int = 1
    custom_options: np.ndarray | None = None
    custom_options_format: int = 0
    mutating_variable_inputs: np.ndarray | None = None
    intermediates: list = field(default_factory=list)
    debug_metadata_index: int = -1

    @property
    def type(self) -> str:
        if self.opcode == CUSTOM:
            return f"CUSTOM:{self.custom_code}"
        return OP_NAMES.get(self.opcode, f"OP_{self.opcode}")

    def subgraphs(self) -> list[Subgraph]:
        """Subgraphs this op refers to (WHILE cond/body, IF branches, CALL_ONCE init, ...)."""
        out = []
        for opts in (self.options, self.options2):
            if isinstance(opts, Options):
                out.extend(v for v in opts.values() if isinstance(v, Subgraph))
        return out

    def __repr__(self):
        return f"Operator({self.type})"


class Subgraph:
    """A dataflow graph of operators and tensors with a safe mutation API."""

    def __init__(self, name: str = "", model: Model | None = None):
        self.name = name
        self.model = model
        self.graph = nx.DiGraph()
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.debug_metadata_index = -1
        self._order: dict[Operator, int] = {}  # insertion order, the tie-break of toposort
        self._counter = itertools.count()
        self._sorted: list[Operator] | None = None  # cached execution order

    # ---- queries
    @property
    def operators(self) -> list[Operator]:
        """Operators in a valid execution order (original order where the graph allows)."""
        if self._sorted is None:
            self._sorted = self._toposort()
        return list(self._sorted)

    def iter_ops(self):
        """The operators in insertion order, unsorted: for counting or collecting, O(1) to
        start (use `operators` when execution order matters)."""
        return iter(self._order)

    @property
    def num_ops(self) -> int:
        return len(self._order)

    def __contains__(self, op) -> bool:
        return op in self._order

    def _toposort(self) -> list[Operator]:
        order = self._order
        if self._is_ordered():
            return list(order)
        ops_only = self.graph.subgraph(order).copy()
        for t in self.tensors:
            prod = self.producer(t)
            if prod is not None:
                ops_only.add_edges_from((prod, c) for c in self.consumers(t) if c is not prod)
        return list(nx.lexicographical_topological_sort(ops_only, key=order.__getitem__))

    def _is_ordered(self) -> bool:
        seen = set()
        for op in self._order:
            for t in op.inputs:
                if t is not None:
                    p = self.producer(t)
                    if p is not None and p not in seen:
                        return False
            seen.add(op)
        return True

    @property
    def tensors(self) -> list[Tensor]:
        return [n for n in self.graph.nodes if isinstance(n, Tensor)]

    def producer(self, t: Tensor) -> Operator | None:
        preds = self.graph.pred[t] if t in self.graph else ()
        for p in preds:
            return p
        return None

    def consumers(self, t: Tensor) -> list[Operator]:
        return list(self.graph.succ[t]) if t in self.graph else []

    def is_used(self, t: Tensor) -> bool:
        return bool(self.graph.succ.get(t)) or any(t is o for o in self.outputs)

    def ops_of_type(self, *types: str) -> list[Operator]:
        return [op for op in self.operators if op.type in types]

    # ---- mutation
    def add_tensor(self, t: Tensor) -> Tensor:
        self.graph.add_node(t)
        return t

    def new_tensor(self, name: str, shape, dtype="float32", **kw) -> Tensor:
        t = Tensor(
            name=self.model.unique_name(name) if self.model else name,
            type=tensor_type_of(dtype),
            shape=tuple(int(d) for d in shape),
            **kw,
        )
        return self.add_tensor(t)

    def new_constant(self, array, name: str = "const", quantization=None) -> Tensor:
        """A constant tensor with a fresh buffer (never edits a shared buffer)."""
        arr = np.asarray(array)
        arr = np.ascontiguousarray(arr).reshape(arr.shape)  # keeps 0-d scalars 0-d
        if arr.dtype.itemsize > 1:
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        t = self.new_tensor(name, arr.shape, arr.dtype, quantization=quantization)
        t.buffer = Buffer(np.frombuffer(arr.tobytes(), np.uint8))
        return t

    def add_op(
        self, op_type: str | int | Operator, inputs=(), outputs=(), options=None, **kw
    ) -> Operator:
        """Add an operator. `op_type` is a builtin name ('ADD'), a code, or a ready Operator.
        `options` may be an Options, or a dict for the op's default options table."""
        if isinstance(op_type, Operator):
            op = op_type
        else:
            code = OP_CODES[op_type] if isinstance(op_type, str) else op_type
            if isinstance(options, dict) and not isinstance(options, Options):
                options = new_options(_default_options_kind(code), **options)
            op = Operator(code, list(inputs), list(outputs), options, **kw)
        for t in itertools.chain(op.inputs, op.outputs, op.intermediates):
            if t is not None and t not in self.graph:
                self.graph.add_node(t)
        for t in op.outputs:
            if t is not None and self.producer(t) is not None:
                raise GraphError(f"{t.name} already has a producer ({self.producer(t).type})")
        self.graph.add_node(op)
        self.graph.add_edges_from((t, op) for t in op.inputs if t is not None)
        self.graph.add_edges_from((op, t) for t in op.outputs if t is not None)
        self._order[op] = next(self._counter)
        self._sorted = None
        return op

    def set_input(self, op: Operator, index: int, t: Tensor | None) -> None:
        old = op.inputs[index]
        op.inputs[index] = t
        self._sorted = None
        if t is not None:
            self.graph.add_edge(t, op)
        if old is not None and not any(x is old for x in op.inputs):
            self.graph.remove_edge(old, op)

    def replace_all_uses(self, old: Tensor, new: Tensor, keep_name: bool = False) -> None:
        """Every op reading `old` reads `new` instead; subgraph outputs and the signature
        defs of this subgraph too. With keep_name, when `old` is a subgraph output and `new`
        is an op's result that is not already an input or output, the two swap names, so
        callers see the same output names."""
        if old is new:
            return
        rename = (
            keep_name
            and any(t is old for t in self.outputs)
            and self.producer(new) is not None
            and not self._is_io(new)
        )
        self.graph.add_node(new)
        for op in self.consumers(old):
            for i, t in enumerate(op.inputs):
                if t is old:
                    self.set_input(op, i, new)
        self.outputs = [new if t is old else t for t in self.outputs]
        for sd in self.model.signature_defs if self.model is not None else ():
            if sd.subgraph is self:
                sd.inputs = [(n, new if t is old else t) for n, t in sd.inputs]
                sd.outputs = [(n, new if t is old else t) for n, t in sd.outputs]
        if rename:
            old.name, new.name = new.name, old.name

    def remove_op(self, op: Operator) -> None:
        """Remove an op whose outputs nobody uses (refuses otherwise)."""
        for t in op.outputs:
            if t is not None and self.is_used(t):
                raise GraphError(f"cannot remove {op.type}: its output {t.name} is still used")
        outs = [t for t in op.outputs if t is not None]
        self.graph.remove_node(op)
        del self._order[op]
        self._sorted = None
        for t in itertools.chain(op.inputs, outs, op.intermediates):
            if (
                t is not None
                and t in self.graph
                and not self.graph.degree(t)
                and not self._is_io(t)
            ):
                self.graph.remove_node(t)

    def _is_io(self, t: Tensor) -> bool:
        return any(t is x for x in self.inputs) or any(t is x for x in self.outputs)

    def remove_unused_tensors(self) -> int:
        keep = {id(t) for op in self._order for t in op.intermediates}
        dead = [
            t
            for t in self.tensors
            if not self.graph.degree(t) and not self._is_io(t) and id(t) not in keep
        ]
        self.graph.remove_nodes_from(dead)
        return len(dead)

    # ---- invariants
    def check(self) -> None:
        """Raise GraphError if an invariant is broken."""
        ops = list(self._order)
        if set(ops) != {n for n in self.graph.nodes if isinstance(n, Operator)}:
            raise GraphError(f"subgraph {self.name!r}: operator list and graph disagree")
        for op in ops:
            want_in = {t for t in op.inputs if t is not None}
            want_out = {t for t in op.outputs if t is not None}
            if set(self.graph.pred[op]) != want_in or set(self.graph.succ[op]) != want_out:
                raise GraphError(
                    f"subgraph {self.name!r}: edges of {op.type} do not match its operand lists"
                )
            for t in want_out:
                if len(self.graph.pred[t]) != 1:
                    raise GraphError(f"tensor {t.name!r} has {len(self.graph.pred[t])} producers")
            for sg in op.subgraphs():
                if self.model is not None and sg not in self.model.subgraphs:
                    raise GraphError(f"{op.type} refers to a subgraph not in the model")
        if not nx.is_directed_acyclic_graph(self.graph):
            raise GraphError(f"subgraph {self.name!r} has a cycle")
        inputs = {id(t) for t in self.inputs}
        for t in self.tensors:
            if (
                self.graph.succ[t]
                and not self.graph.pred[t]
                and id(t) not in inputs
                and not t.is_constant
                and not t.is_variable
                and t.type not in _STATEFUL
            ):
                raise GraphError(
                    f"subgraph {self.name!r}: tensor {t.name!r} is read but never "
                    "produced, constant or an input"
                )
        for t in self.outputs:
            if t not in self.graph:
                raise GraphError(f"subgraph {self.name!r}: output {t.name!r} is not in the graph")
        for op in ops:
            _check_shapes(self, op)

    def __repr__(self):
        return f"Subgraph({self.name!r}, {len(self._order)} ops)"


_STATEFUL = {5, 13, 14}  # STRING/RESOURCE/VARIANT may be read without a producer (empty inputs)


_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "LOGISTIC", "TANH", "RELU", "RELU6", "MAXIMUM"}


def _check_shapes(sg: Subgraph, op: Operator) -> None:
    """Elementwise ops: static operand shapes must broadcast to the output shape."""
    if op.type not in _ELEMENTWISE or not op.outputs or op.outputs[0] is None:
        return
    out = op.outputs[0]
    shapes = [t.shape for t in op.inputs if t is not None]
    if out.is_dynamic or any(t.is_dynamic for t in op.inputs if t is not None):
        return
    try:
        expect = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise GraphError(
            f"{op.type} in {sg.name!r}: operand shapes {shapes} do not broadcast"
        ) from None
    if expect != tuple(out.shape):
        raise GraphError(
            f"{op.type} in {sg.name!r}: output {out.name!r} has shape "
            f"{list(out.shape)}, operands give {list(expect)}"
        )


def _default_options_kind(code: int) -> str:
    from tflgraph.io.schema import OPTIONS_CODES

    name = OP_NAMES[code]
    camel = "".join(p.capitalize() for p in name.split("_")) + "Options"
    for kind in OPTIONS_CODES:
        if kind.lower() == camel.lower():
            return kind
    raise GraphError(f"no default options table for {name}; pass an Options")


@dataclass(eq=False)
class SignatureDef:
    key: str
    subgraph: Subgraph
    inputs: list  # list[(name, Tensor)]
    outputs: list


class Model:
    """A whole TFLite model."""

    def __init__(self):
        self.version = 3
        self.description = ""
        self.subgraphs: list[Subgraph] = []
        self.metadata: list[tuple[str, Buffer]] = []
        self.metadata_buffers: list[Buffer] = []
        self.signature_defs: list[SignatureDef] = []
        self._names: set[str] | None = None

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    def add_subgraph(self, name: str = "") -> Subgraph:
        sg = Subgraph(name, self)
        self.subgraphs.append(sg)
        return sg

    def unique_name(self, base: str) -> str:
        if self._names is None:
            self._names = {t.name for sg in self.subgraphs for t in sg.tensors}
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def reachable_subgraphs(self) -> list[Subgraph]:
        """Subgraph 0, signature subgraphs and everything their ops refer to, in model order."""
        seen = set()
        stack = [self.subgraphs[0]] if self.subgraphs else []
        stack += [s.subgraph for s in self.signature_defs]
        while stack:
            sg = stack.pop()
            if sg in seen:
                continue
            seen.add(sg)
            for op in sg.iter_ops():
                stack.extend(op.subgraphs())
        return [sg for sg in self.subgraphs if sg in seen]

    def check(self) -> None:
        for sg in self.subgraphs:
            sg.check()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sg in self.reachable_subgraphs():
            for op in sg.iter_ops():
                counts[op.type] = counts.get(op.type, 0) + 1
        return dict(sorted(counts.items()))

    def __repr__(self):
        return f"Model({len(self.subgraphs)} subgraphs)"


class Snapshot:
    """A model's graph state, to undo a rewrite that did not prove out: the IR structure is
    copied (subgraph graphs and operand lists, op fields and options, tensor fields,
    signature defs), the weight buffers are shared, not copied. `restore()` puts every object
    back as it was (ops and tensors added since disappear with the graph), once.

    Exact for rewrites that go through the mutation API and replace values rather than write
    into them (a new constant, a new options value, a new shape tuple), as passes must."""

    def __init__(self, model: Model):
        self.model = model
        self.fields = [(model, _fields(model)), *((sd, _fields(sd)) for sd in model.signature_defs)]
        for sg in model.subgraphs:
            self.fields.append((sg, _fields(sg)))
            for node in sg.graph.nodes:
                self.fields.append((node, _fields(node)))
            for op in sg.iter_ops():
                self.fields.extend((t, _fields(t)) for t in op.intermediates if t is not None)

    def restore(self) -> None:
        for obj, saved in self.fields:
            vars(obj).clear()
            vars(obj).update(saved)
        for sg in self.model.subgraphs:
            sg._sorted = None


def _fields(obj) -> dict:
    """A copy of an IR object's fields that shares what the IR never writes in place (tensors,
    buffers, arrays, options values): lists, dicts, option tables and graphs are copied."""
    out = {}
    for k, v in vars(obj).items():
        if isinstance(v, nx.DiGraph):
            v = v.copy()
        elif isinstance(v, (list, dict, set)):  # dict covers Options (copy keeps .kind)
            v = copy.copy(v)
        out[k] = v
    return out
