"""The in-memory IR: Model, Subgraph, Tensor, Operator, Buffer.

A `Subgraph` wraps a `networkx.DiGraph` whose nodes are both operators and tensors; edges run
tensor -> op (the op reads it) and op -> tensor (the op writes it). Operand order lives on the
op (`op.inputs`, `None` for TFLite's optional -1), never in edge order. Passes mutate only
through the Subgraph API, which keeps the graph and the operand lists in step; the operand
lists themselves refuse writes (`Operands`). `op.option(name)` reads an options field as the
schema defines it, `op.activation` names the fused activation, `t.type_name` the dtype.

Control flow is explicit: an options field naming a subgraph (WHILE's `cond_subgraph_index`,
IF's branches, CALL_ONCE's init, ...) holds the `Subgraph` object itself.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.operands import operand_problem
from tflgraph.io.schema import (
    ACTIVATION_NAMES,
    CUSTOM,
    NUMPY_DTYPES,
    OP_CODES,
    OP_NAMES,
    TENSOR_TYPE_NAMES,
    Options,
    RawTable,
    new_options,
    option_defaults,
    options_kind,
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
    unknown_fields: dict | None = None  # slot -> schema.RawField the schema does not know

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
    def is_quantized(self) -> bool:
        """The tensor holds quantized values: its quantization has at least one scale."""
        q = self.quantization
        return bool(q) and q.get("scale") is not None and len(q["scale"]) > 0

    @property
    def data(self) -> np.ndarray | None:
        """The constant value as a typed, shaped, read-only numpy view (None if not constant)."""
        if not self.is_constant or self.dtype is None or self.sparsity is not None:
            return None
        arr = self.buffer.data.view(self.dtype)
        return arr.reshape(self.shape) if arr.size == math.prod(self.shape) else arr

    @property
    def is_dynamic(self) -> bool:
        return self.shape_signature is not None and any(d < 0 for d in self.shape_signature)

    def with_batch(self, batch: int) -> tuple[int, ...]:
        """The shape with `batch` on axis 0 if the signature has -1 there (a batch-None
        input), else the stored shape."""
        sig = self.shape_signature
        if sig and sig[0] < 0:
            return (batch, *self.shape[1:])
        return tuple(self.shape)

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.type_name}, {list(self.shape)})"


class Operands(list):
    """An operator's operand list (Tensor, or None for an absent optional operand). It reads
    as a list but refuses writes: the graph's edges mirror it, so it changes only through
    `Subgraph.set_input` / `set_inputs`."""

    __slots__ = ()

    def _refuse(self, *_args, **_kwargs):
        raise GraphError("operands change through Subgraph.set_input/set_inputs (edges follow)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def _set(self, index: int, t: Tensor | None) -> None:  # for Subgraph only
        list.__setitem__(self, index, t)

    def __reduce__(self):  # copy and pickle without the refused mutators
        return Operands, (list(self),)


@dataclass(eq=False)
class Operator:
    """One operator. `opcode` is a builtin code; custom ops keep their name in `custom_code`.
    Its operand lists are read-only `Operands`: a Subgraph changes them with the edges."""

    opcode: int
    inputs: Operands = field(default_factory=Operands)
    outputs: Operands = field(default_factory=Operands)
    options: Options | RawTable | None = None
    options2: Options | RawTable | None = None
    custom_code: str | None = None
    version: int = 1
    custom_options: np.ndarray | None = None
    custom_options_format: int = 0
    mutating_variable_inputs: np.ndarray | None = None
    intermediates: Operands = field(default_factory=Operands)
    debug_metadata_index: int = -1
    unknown_fields: dict | None = None  # slot -> schema.RawField the schema does not know
    code_unknown_fields: dict | None = None  # those of its OperatorCode

    def __post_init__(self):
        self.inputs, self.outputs = Operands(self.inputs), Operands(self.outputs)
        self.intermediates = Operands(self.intermediates)

    @property
    def type(self) -> str:
        if self.opcode == CUSTOM:
            return f"CUSTOM:{self.custom_code}"
        return OP_NAMES.get(self.opcode, f"OP_{self.opcode}")

    def option(self, name: str, default=None):
        """The options field `name`: the op's own value, else what the schema says an absent
        field means (its default; None for a vector or string). `default` when the op's
        options table has no such field, is unknown to the schema (raw) or is absent."""
        opts = self.options
        if not isinstance(opts, Options):
            return default
        if name in opts:
            return opts[name]
        return option_defaults(opts.kind).get(name, default)

    @property
    def activation(self) -> str:
        """The fused activation by name ("NONE", "RELU", "TANH", ...); "NONE" for an op
        without a fused_activation_function option."""
        code = self.option("fused_activation_function", 0)
        return ACTIVATION_NAMES.get(code, f"ACTIVATION_{code}")

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
        self.unknown_fields: dict | None = None  # slot -> schema.RawField (see Tensor)
        self._order: dict[Operator, int] = {}  # insertion order, the tie-break of toposort
        self._counter = itertools.count()
        self._sorted: list[Operator] | None = None  # cached execution order
        self.edits = 0  # how many mutations this API has made (dead-code removal skips
        # the subgraphs it found clean and that have not been edited since)

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
        """Kahn's algorithm taking the ready op added first (a lexicographical topological sort
        keyed by insertion order): O(edges log ops)."""
        order = self._order
        if self._is_ordered():
            return list(order)
        waiting: dict[Operator, int] = {}  # op -> how many distinct producer ops it waits for
        readers: dict[Operator, list[Operator]] = {}
        for op in order:
            producers = {self.producer(t) for t in op.inputs if t is not None} - {None, op}
            waiting[op] = len(producers)
            for p in producers:
                readers.setdefault(p, []).append(op)
        ready = [(i, op) for op, i in order.items() if not waiting[op]]
        out = []
        while ready:
            _, op = heapq.heappop(ready)
            out.append(op)
            for r in readers.get(op, ()):
                waiting[r] -= 1
                if not waiting[r]:
                    heapq.heappush(ready, (order[r], r))
        if len(out) != len(order):
            raise GraphError(f"subgraph {self.name!r} has a cycle")
        return out

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
        self._edited()
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
            if why := operand_problem(op):  # built by a pass: name the mistake now
                raise GraphError(f"cannot add {why}")
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
        if self._sorted is not None and any(self.consumers(t) for t in op.outputs if t is not None):
            self._sorted = None
        elif self._sorted is not None:  # added last and read by nothing: it runs last
            self._sorted.append(op)
        self._edited()
        self._track_users(op, added=True)
        return op

    def reorder(self, ops: list[Operator]) -> None:
        """Make `ops`, every op of this subgraph once and producers before readers, the
        execution order (and the insertion order later additions follow)."""
        if len(ops) != len(self._order) or set(ops) != set(self._order):
            raise GraphError("reorder: not every op of the subgraph exactly once")
        done: set[Operator] = set()
        for op in ops:
            producers = {self.producer(t) for t in op.inputs if t is not None} - {None}
            if not producers <= done:
                raise GraphError(f"reorder: {op.type} before the op computing its input")
            done.add(op)
        self._order = {op: i for i, op in enumerate(ops)}
        self._counter = itertools.count(len(ops))
        self._sorted = list(ops)
        self._edited()

    def set_input(self, op: Operator, index: int, t: Tensor | None) -> None:
        """Operand `index` of `op` becomes `t` (None: absent); an index past the end pads the
        operands with absent ones first."""
        if index >= len(op.inputs):
            self.set_inputs(op, [*op.inputs, *[None] * (index - len(op.inputs)), t])
            return
        old = op.inputs[index]
        op.inputs._set(index, t)
        self._sorted = None
        self._edited()
        if t is not None:
            self.graph.add_edge(t, op)
        if old is not None and not any(x is old for x in op.inputs):
            self.graph.remove_edge(old, op)

    def set_inputs(self, op: Operator, inputs) -> None:
        """`op` reads `inputs` (Tensor or None each) from now on; the edges follow."""
        old, new = op.inputs, Operands(inputs)
        if len(old) == len(new) and all(a is b for a, b in zip(old, new)):
            return
        op.inputs = new
        self._sorted = None
        self._edited()
        self.graph.add_edges_from((t, op) for t in new if t is not None)
        kept = {id(t) for t in new}
        self.graph.remove_edges_from({(t, op) for t in old if t is not None and id(t) not in kept})

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
        self._edited()
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
        if self._sorted is not None:  # nothing waited for it: the others keep their order
            self._sorted.remove(op)
        self._edited()
        self._track_users(op, added=False)
        for t in itertools.chain(op.inputs, outs, op.intermediates):
            if (
                t is not None
                and t in self.graph
                and not self.graph.degree(t)
                and not self._is_io(t)
            ):
                self.graph.remove_node(t)

    def _edited(self) -> None:
        self.edits += 1

    def _track_users(self, op: Operator, added: bool) -> None:
        """Keep the model's subgraph-users index (Model.subgraph_users) in step with an op
        that was just added or removed: O(subgraphs the op refers to)."""
        index = self.model._users if self.model is not None else None
        refs = op.subgraphs() if index is not None else ()
        if not refs or self not in index[0]:
            return
        for r in refs:
            if added:
                index[1].setdefault(r, []).append(op)
            else:
                index[1][r].remove(op)

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
                and t.type_name not in _STATEFUL
            ):
                raise GraphError(
                    f"subgraph {self.name!r}: tensor {t.name!r} is read but never "
                    "produced, constant or an input"
                )
        for t in self.outputs:
            if t not in self.graph:
                raise GraphError(f"subgraph {self.name!r}: output {t.name!r} is not in the graph")
        for op in ops:
            if why := operand_problem(op):
                raise GraphError(f"subgraph {self.name!r}: {why}")
            _check_shapes(self, op)

    def __repr__(self):
        return f"Subgraph({self.name!r}, {len(self._order)} ops)"


_STATEFUL = {"STRING", "RESOURCE", "VARIANT"}  # may be read without a producer (empty inputs)


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
    kind = options_kind(OP_NAMES[code])
    if kind is None:
        raise GraphError(f"no default options table for {OP_NAMES[code]}; pass an Options")
    return kind


@dataclass(eq=False)
class SignatureDef:
    key: str
    subgraph: Subgraph
    inputs: list  # list[(name, Tensor)]
    outputs: list
    unknown_fields: dict | None = None  # slot -> schema.RawField (see Tensor)


class Model:
    """A whole TFLite model."""

    def __init__(self):
        self.version = 3
        self.description = ""
        self.subgraphs: list[Subgraph] = []
        self.metadata: list[tuple[str, Buffer]] = []
        self.metadata_buffers: list[Buffer] = []
        self.signature_defs: list[SignatureDef] = []
        self.unknown_fields: dict | None = None  # slot -> schema.RawField (see Tensor)
        # "Table slot N" of each field the reader could not keep (see io/schema.py)
        self.dropped_fields: list[str] = []
        self._names: set[str] | None = None
        # (the subgraphs indexed, {subgraph: ops referring to it}): see subgraph_users
        self._clean: dict = {}  # what pipeline.remove_dead_code left clean: see there
        self._users: tuple[tuple[Subgraph, ...], dict[Subgraph, list[Operator]]] | None = None

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

    def subgraph_users(self, sg: Subgraph) -> list[Operator]:
        """The ops of the model's subgraphs that refer to `sg` (as WHILE cond or body, IF
        branch, CALL_ONCE init, ...). From an index built once and kept up to date by add_op
        and remove_op (rebuilt when `subgraphs` changes), so a query is O(its users). An op's
        subgraph references are read when it is added: set them before add_op."""
        key = tuple(self.subgraphs)
        if self._users is None or self._users[0] != key:
            users: dict[Subgraph, list[Operator]] = {}
            for s in key:
                for op in s.iter_ops():
                    for r in op.subgraphs():
                        users.setdefault(r, []).append(op)
            self._users = (key, users)
        return list(self._users[1].get(sg, ()))

    def reachable_subgraphs(self, roots: list[Subgraph] | None = None) -> list[Subgraph]:
        """`roots` (default: subgraph 0 and the signature subgraphs) and everything their ops
        refer to, in model order."""
        seen = set()
        if roots is None:
            roots = self.subgraphs[:1] + [s.subgraph for s in self.signature_defs]
        stack = list(roots)
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
        self.model._users = None  # the subgraph-users index is rebuilt on its next use


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
