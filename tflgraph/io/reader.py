"""flatbuffer bytes -> Model.

Fields the schema does not know are kept on the Model, Subgraph, Tensor, Operator and
SignatureDef they belong to (`unknown_fields`; an OperatorCode's on each of its operators)
and inside the tables held as dicts (quantization, sparsity); those of Buffer, Metadata and
TensorMap entries, which the IR holds as plain values, are listed in `Model.dropped_fields`,
as are offsets to data of unknown shape (io/schema.py says which fields those are).

Constant data stays where it is: every Buffer is a zero-copy numpy view into the file (memory
mapped when loading from a path), including buffers stored after the flatbuffer through
offset/size (models over 2 GB) and large custom options. Every offset is bounds-checked: a
damaged file raises ModelError with the reason, never reads out of range.
"""

from __future__ import annotations

import mmap
import os
import struct

import networkx as nx
import numpy as np

from tflgraph.errors import ModelError
from tflgraph.io.schema import (
    FILE_IDENTIFIER,
    UNKNOWN,
    Options,
    Reader,
    SchemaError,
    spec,
    subgraph_fields,
)
from tflgraph.ir import Buffer, GraphError, Model, Operator, SignatureDef, Subgraph, Tensor

# files users pass by mistake: the leading bytes that name them, and what to do instead
FOREIGN_FORMATS = (
    (b"\x89HDF\r\n\x1a\n", "a Keras HDF5 model (.h5)"),
    (b"PK\x03\x04", "a zip archive (a Keras 3 .keras model?)"),
)
CONVERT = (
    "convert it first (tf.lite.TFLiteConverter.from_keras_model(model).convert(), or "
    "from_saved_model(dir); PyTorch and ONNX models through litert-torch or onnx2tf)"
)


def load(source) -> Model:
    """Load a model from a path, bytes, bytearray or memoryview."""
    what = str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        if os.path.isdir(source) and os.path.exists(os.path.join(source, "saved_model.pb")):
            raise ModelError(f"{what}: a TensorFlow SavedModel, not a .tflite file; {CONVERT}")
        data = _map_file(source)
    else:
        data = source
    try:
        return _load(data)
    except ModelError as e:
        raise ModelError(f"{what}: {e}") from None
    except (
        struct.error,
        ValueError,
        IndexError,
        KeyError,
        UnicodeError,
        OverflowError,
        RecursionError,
        MemoryError,
        nx.NetworkXException,
    ) as e:
        raise ModelError(f"{what}: not a valid TFLite model ({type(e).__name__}: {e})") from None


def _map_file(path) -> bytes | mmap.mmap:
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelError(f"{path}: the file is empty")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except PermissionError:
        raise ModelError(f"{path}: permission denied") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None


def _load(data) -> Model:
    if len(data) < 8:
        raise ModelError(f"too short to be a TFLite model ({len(data)} bytes)")
    ident = bytes(data[4:8])
    if ident != FILE_IDENTIFIER:
        for magic, kind in FOREIGN_FORMATS:
            if bytes(data[: len(magic)]) == magic:
                raise ModelError(f"{kind}, not a TFLite model; {CONVERT}")
        raise ModelError(f"not a TFLite model (file identifier {ident!r}, expected b'TFL3')")
    r = Reader(data)
    m = r.read_table(r.root(), spec("Model"))
    file_view = np.frombuffer(r.mv, np.uint8)

    buffers = [_buffer(b, file_view, i) for i, b in enumerate(m.get("buffers", []))]

    def buffer_at(index: int, who: str) -> Buffer:
        if not 0 <= index < len(buffers):
            raise ModelError(f"{who} refers to buffer {index}, the model has {len(buffers)}")
        return buffers[index]

    opcodes = []
    for oc in m.get("operator_codes", []):
        code = max(oc.get("builtin_code", 0), oc.get("deprecated_builtin_code", 0))
        opcodes.append((code, oc.get("custom_code"), oc.get("version", 1), oc.get(UNKNOWN)))

    model = Model()
    model.unknown_fields = m.get(UNKNOWN)
    model.version = m.get("version", 0)
    model.description = m.get("description", "")
    raw_subgraphs = m.get("subgraphs", [])
    if not raw_subgraphs:
        raise ModelError("the model has no subgraphs")
    model.subgraphs = [Subgraph(s.get("name", ""), model) for s in raw_subgraphs]
    tensor_lists = [
        _subgraph(model, i, s, opcodes, buffer_at, file_view) for i, s in enumerate(raw_subgraphs)
    ]

    model.metadata = [
        (md.get("name", ""), buffer_at(md.get("buffer", 0), "metadata"))
        for md in m.get("metadata", [])
    ]
    model.metadata_buffers = [
        buffer_at(int(i), "metadata_buffer") for i in m.get("metadata_buffer", [])
    ]
    for sd in m.get("signature_defs", []):
        index = sd.get("subgraph_index", 0)
        sg = _subgraph_at(model, index, "signature def")
        tensors = tensor_lists[index]

        def entries(maps, tensors=tensors):
            return [
                (t.get("name", ""), _at(tensors, t.get("tensor_index", 0), "signature def"))
                for t in maps
            ]

        model.signature_defs.append(
            SignatureDef(
                sd.get("signature_key", ""),
                sg,
                entries(sd.get("inputs", [])),
                entries(sd.get("outputs", [])),
                sd.get(UNKNOWN),
            )
        )
    model.dropped_fields = r.dropped + _unkept(m)
    return model


def _unkept(m: dict) -> list[str]:
    """'Table slot N' for the unknown fields of the tables the IR holds as plain values."""
    tables = [
        ("Buffer", m.get("buffers", [])),
        ("Metadata", m.get("metadata", [])),
        *(
            ("TensorMap", sd.get(side, []))
            for sd in m.get("signature_defs", [])
            for side in ("inputs", "outputs")
        ),
    ]
    return [
        f"{name} slot {slot}" for name, rows in tables for t in rows for slot in t.get(UNKNOWN, ())
    ]


def _buffer(b: dict, file_view: np.ndarray, index: int) -> Buffer:
    offset, size = b.get("offset", 0), b.get("size", 0)
    if offset > 1:
        if offset + size > len(file_view):
            raise ModelError(f"buffer {index} lies outside the file (offset {offset}, size {size})")
        return Buffer(file_view[offset : offset + size])
    data = b.get("data")
    return Buffer(data if data is not None and len(data) else None)


def _at(items: list, index: int, who: str):
    if not 0 <= index < len(items):
        raise ModelError(f"{who} refers to tensor {index}, the subgraph has {len(items)}")
    return items[index]


def _subgraph_at(model: Model, index: int, who: str) -> Subgraph:
    if not 0 <= index < len(model.subgraphs):
        raise ModelError(f"{who} refers to subgraph {index}, the model has {len(model.subgraphs)}")
    return model.subgraphs[index]


def _subgraph(model: Model, index: int, s: dict, opcodes, buffer_at, file_view) -> list[Tensor]:
    sg = model.subgraphs[index]
    sg.debug_metadata_index = s.get("debug_metadata_index", -1)
    sg.unknown_fields = s.get(UNKNOWN)
    tensors = [_tensor(t, buffer_at) for t in s.get("tensors", [])]
    for t in tensors:
        sg.graph.add_node(t)
    n = len(tensors)

    def tensor(i: int, who: str) -> Tensor | None:
        i = int(i)
        if i == -1:
            return None
        if not 0 <= i < n:
            raise ModelError(f"{who} in subgraph {index} refers to tensor {i}, it has {n}")
        return tensors[i]

    sg.inputs = [tensor(i, "subgraph input") for i in s.get("inputs", [])]
    sg.outputs = [tensor(i, "subgraph output") for i in s.get("outputs", [])]
    if any(t is None for t in sg.inputs + sg.outputs):
        raise ModelError(f"subgraph {index} has an input or output -1")
    for k, o in enumerate(s.get("operators", [])):
        who = f"operator {k}"
        oi = o.get("opcode_index", 0)
        if not 0 <= oi < len(opcodes):
            raise ModelError(
                f"{who} in subgraph {index} refers to operator code {oi}, "
                f"the model has {len(opcodes)}"
            )
        code, custom_code, version, code_unknown = opcodes[oi]
        op = Operator(
            code,
            [tensor(i, who) for i in o.get("inputs", ())],
            [tensor(i, who) for i in o.get("outputs", ())],
            _options(model, o.get("builtin_options")),
            _options(model, o.get("builtin_options_2")),
            custom_code,
            version,
            o.get("custom_options"),
            o.get("custom_options_format", 0),
            o.get("mutating_variable_inputs"),
            [tensor(i, who) for i in o.get("intermediates", ())],
            o.get("debug_metadata_index", -1),
            o.get(UNKNOWN),
            code_unknown,
        )
        large = o.get("large_custom_options_offset", 0)
        if large > 1:
            size = o.get("large_custom_options_size", 0)
            if large + size > len(file_view):
                raise ModelError(f"{who}: large custom options lie outside the file")
            op.custom_options = file_view[large : large + size]
        try:
            sg.add_op(op)
        except GraphError as e:
            raise ModelError(f"subgraph {index}: {e}") from None
    if not nx.is_directed_acyclic_graph(sg.graph):
        raise ModelError(f"subgraph {index} has a cycle")
    return tensors


def _tensor(t: dict, buffer_at) -> Tensor:
    shape = t.get("shape")
    sig = t.get("shape_signature")
    name = t.get("name", "")
    buf = buffer_at(t.get("buffer", 0), f"tensor {name!r}")
    return Tensor(
        name=name,
        type=t.get("type", 0),
        shape=tuple(shape.tolist()) if shape is not None else (),
        shape_signature=tuple(sig.tolist()) if sig is not None else None,
        buffer=buf if buf.data is not None else None,
        quantization=t.get("quantization"),
        is_variable=t.get("is_variable", False),
        sparsity=t.get("sparsity"),
        has_rank=t.get("has_rank", False),
        variant_tensors=t.get("variant_tensors"),
        unknown_fields=t.get(UNKNOWN),
    )


def _options(model: Model, opts):
    if not isinstance(opts, Options):
        return opts
    for name in subgraph_fields(opts):
        opts[name] = _subgraph_at(model, opts.get(name, 0), f"{opts.kind}.{name}")
    return opts


__all__ = ["load", "SchemaError"]
