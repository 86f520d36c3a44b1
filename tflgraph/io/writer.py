"""Model -> flatbuffer bytes.

Writes only what is reachable (subgraphs from subgraph 0 and the signatures, tensors some op
or the subgraph's inputs/outputs use, buffers those tensors use, operator codes those ops use);
dedupes identical constant buffers; keeps buffer 0 empty; aligns every buffer's data to 16
bytes; stores buffers after the flatbuffer (Buffer.offset/size) when they would push it past
2 GB. `save` writes atomically: a temporary file in the target folder, then a rename.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import flatbuffers
import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.schema import (
    FILE_IDENTIFIER,
    PLACEHOLDER_FOR_GREATER_OP_CODES,
    UNKNOWN,
    Offset,
    Options,
    spec,
    subgraph_fields,
    write_offset_vector,
    write_table,
)
from tflgraph.ir import Buffer, Model, Subgraph, Tensor

ALIGNMENT = 16
FLATBUFFER_LIMIT = 2**31 - 2**24  # leave room for tables and padding under 2 GiB


def save(model: Model, path, **kw) -> None:
    """Write the model to `path` atomically."""
    write_atomic(path, _parts(*_build(model, **kw)))


def to_bytes(model: Model, **kw) -> bytes:
    return b"".join(_parts(*_build(model, **kw)))


def write_atomic(path, parts) -> None:
    """Write the bytes-like `parts` to `path` through a temporary file in the same folder and
    a rename, so that `path` is never seen half-written (and an error leaves it as it was)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _parts(builder: flatbuffers.Builder, tail) -> list:
    """The file's pieces without copying: the flatbuffer, then padded external buffers."""
    parts = [memoryview(builder.Bytes)[builder.Head() :]]
    for pad, data in tail:
        parts += [bytes(pad), memoryview(np.ascontiguousarray(data)).cast("B")]
    return parts


class BufferTable:
    """Unique constant buffers in order of first use; identical contents share one index
    (`owners[i]` is the first Buffer seen with index i's bytes).

    A buffer is hashed only once another buffer of the same size shows up, so a model whose
    buffers all differ in size never pays for hashing; lookups are O(1) either way."""

    def __init__(self):
        self.data: list[np.ndarray | None] = [None]  # buffer 0 stays empty
        self.owners: list[Buffer | None] = [None]
        self._index: dict[int, int] = {}  # id(Buffer) -> index
        self._unhashed: dict[int, int] = {}  # size -> index of the one buffer of that size
        self._by_digest: dict[tuple[int, bytes], int] = {}

    @staticmethod
    def _digest(data: np.ndarray) -> bytes:
        return hashlib.blake2b(
            memoryview(np.ascontiguousarray(data)).cast("B"), digest_size=16
        ).digest()

    def index(self, buf: Buffer | None) -> int:
        if buf is None or buf.data is None or buf.nbytes == 0:
            return 0
        known = self._index.get(id(buf))
        if known is not None:
            return known
        size = buf.nbytes
        key = None
        if size in self._unhashed or (size, None) in self._by_digest:
            first = self._unhashed.pop(size, None)
            if first is not None:
                self._by_digest[(size, self._digest(self.data[first]))] = first
                self._by_digest[(size, None)] = -1  # marks: this size is hashed from now on
            key = (size, self._digest(buf.data))
            i = self._by_digest.get(key)
            if i is not None:
                self._index[id(buf)] = i
                return i
        i = len(self.data)
        self.data.append(buf.data)
        self.owners.append(buf)
        if key is None:
            self._unhashed[size] = i
        else:
            self._by_digest[key] = i
        self._index[id(buf)] = i
        return i


def _used_tensors(sg: Subgraph, extra) -> list[Tensor]:
    used = {id(t) for t in sg.inputs}
    used.update(id(t) for t in sg.outputs)
    used.update(id(t) for t in extra)
    for op in sg.iter_ops():
        used.update(id(t) for t in op.inputs if t is not None)
        used.update(id(t) for t in op.outputs if t is not None)
        used.update(id(t) for t in op.intermediates)
    return [n for n in sg.graph.nodes if isinstance(n, Tensor) and id(n) in used]


def _options_for_writing(opts, sg_index: dict):
    if not isinstance(opts, Options):
        return opts
    fields = subgraph_fields(opts)
    if not fields:
        return opts
    out = Options(opts.kind, opts)
    for name in fields:
        if name in out:
            out[name] = sg_index[out[name]]
    return out


def _frozen(fields: dict | None) -> tuple | None:
    """Unknown fields as part of a dict key (ops share an OperatorCode when theirs agree)."""
    return tuple(sorted(fields.items())) if fields else None


def _create_aligned_bytes(builder: flatbuffers.Builder, data: np.ndarray) -> int:
    mv = memoryview(np.ascontiguousarray(data)).cast("B")
    n = len(mv)
    builder.StartVector(1, n, ALIGNMENT)
    builder.head = builder.Head() - n
    builder.Bytes[builder.head : builder.head + n] = mv
    return builder.EndVector()


def _build(model: Model, external_buffers: bool | None = None):
    subgraphs = model.reachable_subgraphs()
    if not subgraphs:
        raise TflgraphError("the model has no subgraphs to write")
    sg_index = {sg: i for i, sg in enumerate(subgraphs)}
    signature_tensors: dict[Subgraph, list[Tensor]] = {}
    for sd in model.signature_defs:
        signature_tensors.setdefault(sd.subgraph, []).extend(t for _, t in sd.inputs + sd.outputs)

    buffers = BufferTable()
    opcodes: dict[tuple, int] = {}
    plans = []  # per subgraph: (tensors, tensor index map, ops)
    for sg in subgraphs:
        tensors = _used_tensors(sg, signature_tensors.get(sg, ()))
        tindex = {id(t): i for i, t in enumerate(tensors)}
        tbuf = [buffers.index(t.buffer) for t in tensors]
        ops = sg.operators
        op_codes = []
        for op in ops:
            key = (op.opcode, op.custom_code, op.version, _frozen(op.code_unknown_fields))
            op_codes.append(opcodes.setdefault(key, len(opcodes)))
        plans.append((sg, tensors, tindex, tbuf, ops, op_codes))
    metadata = [(name, buffers.index(buf)) for name, buf in model.metadata]
    metadata_buffers = [buffers.index(buf) for buf in model.metadata_buffers]

    data_bytes = sum(0 if d is None else d.nbytes for d in buffers.data)
    if external_buffers is None:
        external_buffers = data_bytes > FLATBUFFER_LIMIT
    n_items = sum(len(p[1]) + len(p[4]) for p in plans)
    initial = (
        1024
        + 256 * n_items
        + (0 if external_buffers else data_bytes + ALIGNMENT * len(buffers.data))
    )
    builder = flatbuffers.Builder(min(initial, flatbuffers.Builder.MAX_BUFFER_SIZE))

    # buffer data first: it lands at the end of the file, aligned
    buffer_offsets, patches = [], []
    for i, d in enumerate(buffers.data):
        if d is None or (external_buffers and d.nbytes) or i == 0:
            buffer_offsets.append(None)
        else:
            buffer_offsets.append(_create_aligned_bytes(builder, d))
    buffer_tables = []
    for i, d in enumerate(buffers.data):
        if external_buffers and d is not None and d.nbytes:
            builder.StartObject(3)
            builder.PrependUint64Slot(2, d.nbytes, 0)
            builder.PrependUint64Slot(1, 1, 0)  # placeholder, patched below
            patches.append((builder.Offset(), d))
            buffer_tables.append(builder.EndObject())
        else:
            values = {} if buffer_offsets[i] is None else {"data": Offset(buffer_offsets[i])}
            buffer_tables.append(write_table(builder, spec("Buffer"), values))

    shared = _SharedTables(builder)
    sg_tables = [_write_subgraph(builder, plan, sg_index, shared) for plan in plans]
    oc_tables = []
    for code, custom, version, unknown in opcodes:
        oc_tables.append(
            write_table(
                builder,
                spec("OperatorCode"),
                {
                    "deprecated_builtin_code": min(code, PLACEHOLDER_FOR_GREATER_OP_CODES),
                    "custom_code": custom,
                    "version": version,
                    "builtin_code": code,
                    UNKNOWN: dict(unknown) if unknown else None,
                },
            )
        )
    sig_tables = []
    for sd in model.signature_defs:
        tindex = plans[sg_index[sd.subgraph]][2]
        sig_tables.append(
            write_table(
                builder,
                spec("SignatureDef"),
                {
                    "inputs": [{"name": n, "tensor_index": tindex[id(t)]} for n, t in sd.inputs],
                    "outputs": [{"name": n, "tensor_index": tindex[id(t)]} for n, t in sd.outputs],
                    "signature_key": sd.key,
                    "subgraph_index": sg_index[sd.subgraph],
                    UNKNOWN: sd.unknown_fields,
                },
            )
        )
    root = write_table(
        builder,
        spec("Model"),
        {
            "version": model.version,
            "operator_codes": Offset(write_offset_vector(builder, oc_tables)),
            "subgraphs": Offset(write_offset_vector(builder, sg_tables)),
            "description": model.description or None,
            "buffers": Offset(write_offset_vector(builder, buffer_tables)),
            "metadata_buffer": np.array(metadata_buffers, np.int32) if metadata_buffers else None,
            "metadata": [{"name": n, "buffer": b} for n, b in metadata] or None,
            "signature_defs": Offset(write_offset_vector(builder, sig_tables))
            if sig_tables
            else None,
            UNKNOWN: model.unknown_fields,
        },
    )
    builder.Finish(root, file_identifier=FILE_IDENTIFIER)

    tail = []
    if patches:
        size = len(builder.Bytes) - builder.Head()
        pos = size
        for off_from_end, d in reversed(patches):
            pad = -pos % ALIGNMENT
            at = len(builder.Bytes) - off_from_end
            builder.Bytes[at : at + 8] = int(pos + pad).to_bytes(8, "little")
            tail.append((pad, d))
            pos += pad + d.nbytes
    return builder, tail


class _SharedTables:
    """One QuantizationParameters table per distinct content, which every tensor with those
    parameters points to (a flatbuffer may reference a table any number of times): int8
    models repeat a few scales over many activations, and a table costs about 80 bytes."""

    def __init__(self, builder: flatbuffers.Builder):
        self.builder, self.written = builder, {}

    def quantization(self, q: dict | None):
        key = _content_key(q) if q is not None else None
        if key is None:
            return q  # nothing to share (or content we do not know how to compare)
        off = self.written.get(key)
        if off is None:
            off = self.written[key] = Offset(
                write_table(self.builder, spec("QuantizationParameters"), q)
            )
        return off


def _content_key(value):
    """A hashable key equal for equal contents (arrays by dtype, shape and bytes), or None
    for a value this does not know how to compare."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        items = [(k, _content_key(v)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]
        if any(k is None for _, k in items):
            return None
        return ("dict", type(value).__name__, getattr(value, "kind", None), tuple(items))
    if isinstance(value, (int, float, str, bool)) or value is None:
        return ("scalar", type(value).__name__, value)
    return None


def _write_subgraph(builder, plan, sg_index, shared: _SharedTables) -> int:
    sg, tensors, tindex, tbuf, ops, op_codes = plan

    def idx(ts):
        return np.array([-1 if t is None else tindex[id(t)] for t in ts], np.int32)

    tensor_spec, op_spec = spec("Tensor"), spec("Operator")
    t_tables = []
    for t, b in zip(tensors, tbuf):
        t_tables.append(
            write_table(
                builder,
                tensor_spec,
                {
                    "shape": np.array(t.shape, np.int32),
                    "type": t.type,
                    "buffer": b,
                    "name": t.name,
                    "quantization": shared.quantization(t.quantization),
                    "is_variable": t.is_variable,
                    "sparsity": t.sparsity,
                    "shape_signature": (
                        np.array(t.shape_signature, np.int32)
                        if t.shape_signature is not None
                        else None
                    ),
                    "has_rank": t.has_rank,
                    "variant_tensors": t.variant_tensors,
                    UNKNOWN: t.unknown_fields,
                },
            )
        )
    op_tables = []
    for op, code_index in zip(ops, op_codes):
        op_tables.append(
            write_table(
                builder,
                op_spec,
                {
                    "opcode_index": code_index,
                    "inputs": idx(op.inputs),
                    "outputs": idx(op.outputs),
                    "builtin_options": _options_for_writing(op.options, sg_index),
                    "custom_options": op.custom_options,
                    "custom_options_format": op.custom_options_format,
                    "mutating_variable_inputs": op.mutating_variable_inputs,
                    "intermediates": idx(op.intermediates) if op.intermediates else None,
                    "builtin_options_2": _options_for_writing(op.options2, sg_index),
                    "debug_metadata_index": op.debug_metadata_index,
                    UNKNOWN: op.unknown_fields,
                },
            )
        )
    return write_table(
        builder,
        spec("SubGraph"),
        {
            "tensors": Offset(write_offset_vector(builder, t_tables)),
            "inputs": idx(sg.inputs),
            "outputs": idx(sg.outputs),
            "operators": Offset(write_offset_vector(builder, op_tables)),
            "name": sg.name or None,
            "debug_metadata_index": sg.debug_metadata_index,
            UNKNOWN: sg.unknown_fields,
        },
    )
