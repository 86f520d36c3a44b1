"""The TFLite schema as data: op names, dtypes, and a generic flatbuffer table codec.

Every table is described by a `TableSpec` (field name, vtable slot, kind). The core tables
(Model, SubGraph, Tensor, ...) are written out below; the ~190 builtin-options tables are
derived lazily from the generated `tflite` package, so a new options table there needs no code
here. `read_table` decodes a table into a dict with bounds checks on every offset (a damaged
file raises `SchemaError`, never reads out of range); `write_table` encodes such a dict.

Options tables the `tflite` package does not know (or known ones carrying fields it does not
know) are kept as `RawTable`: the table's inline bytes and vtable, re-emitted unchanged. That
is exact for tables of scalars, which all TFLite options tables to date are.

Any other table keeps the fields it carries beyond this schema (an older converter's field, a
field newer than the `tflite` package) under `UNKNOWN` in its dict, slot -> `RawField`; the
writer re-emits them at their slots. A field's type is not in the file, so each is judged by
its inline bytes, which run up to the next field of the table or the table's end:
- a field older schemas defined (HISTORIC_STRINGS: SignatureDef's `key`) is that string;
- bytes that, read as a 4-byte offset (a 4-aligned field), point 4-aligned past the end of the
  table, at nothing a known field of the table points to, are an offset: to a string (UTF-8
  without NUL, NUL-terminated) kept as that string; to anything else (a vector, a table: data
  of unknown shape that cannot be copied faithfully) dropped and reported in
  `Reader.dropped` (the CLI warns once) rather than written back as a dangling offset;
- any other field is a scalar: its bytes are kept at the widest of 8, 4, 2, 1 that fits
  before the next field and that its position is aligned to (`fit_width`, as RawTable does),
  which covers the scalar whole (a narrower one plus the zero padding after it: flatbuffers
  are little-endian, so a reader that knows the type reads the same value), and written back
  aligned to that width. (Structs wider than 8 bytes would be cut: TFLite has no structs.)
The judgement is a heuristic only for new fields: a scalar whose value happens to be such an
offset is taken for one (a string it points to is written back as a string, so the number
changes; otherwise it is dropped with the warning). A reader can do no better without the
field's type.
"""

from __future__ import annotations

import importlib
import inspect
import re
import struct
import sys
from dataclasses import dataclass, field
from functools import cache

import flatbuffers
import numpy as np
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.BuiltinOptions2 import BuiltinOptions2
from tflite.TensorType import TensorType

from tflgraph.errors import ModelError, did_you_mean


class SchemaError(ModelError):
    """The bytes are not a well-formed TFLite flatbuffer."""


# --------------------------------------------------------------------------- enums


def _enum(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


OP_NAMES: dict[int, str] = _enum(BuiltinOperator)
OP_CODES: dict[str, int] = {name: code for code, name in OP_NAMES.items()}
OPTIONS_NAMES: dict[int, str] = _enum(BuiltinOptions)
OPTIONS_CODES: dict[str, int] = {n: c for c, n in OPTIONS_NAMES.items()}
OPTIONS2_NAMES: dict[int, str] = _enum(BuiltinOptions2)
OPTIONS2_CODES: dict[str, int] = {n: c for c, n in OPTIONS2_NAMES.items()}
TENSOR_TYPE_NAMES: dict[int, str] = _enum(TensorType)
TENSOR_TYPES: dict[str, int] = {n: c for c, n in TENSOR_TYPE_NAMES.items()}
ACTIVATION_NAMES: dict[int, str] = _enum(ActivationFunctionType)  # fused_activation_function
ACTIVATION_CODES: dict[str, int] = {n: c for c, n in ACTIVATION_NAMES.items()}
CUSTOM = OP_CODES["CUSTOM"]
PLACEHOLDER_FOR_GREATER_OP_CODES = 127  # deprecated_builtin_code of a code above 127

# TensorType -> numpy dtype (None: no numpy equivalent, e.g. STRING, RESOURCE, VARIANT, INT4)
NUMPY_DTYPES: dict[int, np.dtype | None] = {
    TENSOR_TYPES[name]: (np.dtype(np_name) if np_name else None)
    for name, np_name in {
        "FLOAT32": "<f4",
        "FLOAT16": "<f2",
        "INT32": "<i4",
        "UINT8": "u1",
        "INT64": "<i8",
        "STRING": None,
        "BOOL": "?",
        "INT16": "<i2",
        "COMPLEX64": "<c8",
        "INT8": "i1",
        "FLOAT64": "<f8",
        "COMPLEX128": "<c16",
        "UINT64": "<u8",
        "RESOURCE": None,
        "VARIANT": None,
        "UINT32": "<u4",
        "UINT16": "<u2",
        "INT4": None,
        "BFLOAT16": None,
    }.items()
    if name in TENSOR_TYPES
}
_TYPE_OF_DTYPE = {dt: code for code, dt in NUMPY_DTYPES.items() if dt is not None}


def tensor_type_of(dtype) -> int:
    """The TFLite TensorType code for a numpy dtype."""
    try:
        return _TYPE_OF_DTYPE[
            np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
        ]
    except KeyError:
        raise SchemaError(f"no TFLite tensor type for numpy dtype {dtype}") from None


# --------------------------------------------------------------------------- table specs

SCALAR_FORMATS = {
    "b": 1,
    "B": 1,
    "?": 1,
    "h": 2,
    "H": 2,
    "i": 4,
    "I": 4,
    "q": 8,
    "Q": 8,
    "f": 4,
    "d": 8,
}
_STRUCTS = {fmt: struct.Struct("<" + fmt) for fmt in SCALAR_FORMATS}
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_HH = struct.Struct("<HH").unpack_from
_SLOT_STRUCTS = [struct.Struct(f"<{n}H").unpack_from for n in range(32)]
_PREPEND_FORMATS = {
    "Bool": "?",
    "Int8": "b",
    "Uint8": "B",
    "Int16": "h",
    "Uint16": "H",
    "Int32": "i",
    "Uint32": "I",
    "Int64": "q",
    "Uint64": "Q",
    "Float32": "f",
    "Float64": "d",
}


@dataclass(frozen=True)
class Field:
    """One field of a table.

    kind: "scalar" (fmt = struct code), "string", "vector" (fmt = numpy dtype str),
    "table" / "tables" (ref = spec name), "union" (ref = union name; the type lives in the
    scalar field named by `type_field`), "raw" (an offset field the codec cannot interpret).
    """

    name: str
    slot: int
    kind: str
    fmt: str = ""
    default: object = 0
    ref: str = ""
    type_field: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    fields: tuple[Field, ...]
    by_slot: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        self.by_slot.update({f.slot: f for f in self.fields})
        # for the writer: scalars widest first (least padding), the rest are offsets
        scalars = sorted(
            (f for f in self.fields if f.kind == "scalar"), key=lambda f: -SCALAR_FORMATS[f.fmt]
        )
        self.by_slot["scalars"] = tuple((f, _STRUCTS[f.fmt]) for f in scalars)
        self.by_slot["offsets"] = tuple(f for f in self.fields if f.kind != "scalar")
        self.by_slot["num_slots"] = max((f.slot for f in self.fields), default=-1) + 1
        # for the reader: slot -> (field, kind, struct or dtype)
        plan = [None] * self.by_slot["num_slots"]
        for f in self.fields:
            extra = (
                _STRUCTS.get(f.fmt)
                if f.kind == "scalar"
                else (np.dtype(f.fmt) if f.kind == "vector" else None)
            )
            plan[f.slot] = (f, f.kind, extra)
        self.by_slot["plan"] = plan

    @property
    def num_slots(self) -> int:
        return self.by_slot["num_slots"]


def _s(name, slot, fmt, default=0):
    return Field(name, slot, "scalar", fmt, default)


def _v(name, slot, dtype):
    return Field(name, slot, "vector", dtype)


CORE_SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in [
        TableSpec(
            "Model",
            (
                _s("version", 0, "I"),
                Field("operator_codes", 1, "tables", ref="OperatorCode"),
                Field("subgraphs", 2, "tables", ref="SubGraph"),
                Field("description", 3, "string"),
                Field("buffers", 4, "tables", ref="Buffer"),
                _v("metadata_buffer", 5, "<i4"),
                Field("metadata", 6, "tables", ref="Metadata"),
                Field("signature_defs", 7, "tables", ref="SignatureDef"),
            ),
        ),
        TableSpec(
            "OperatorCode",
            (
                _s("deprecated_builtin_code", 0, "b"),
                Field("custom_code", 1, "string"),
                _s("version", 2, "i", 1),
                _s("builtin_code", 3, "i"),
            ),
        ),
        TableSpec(
            "SubGraph",
            (
                Field("tensors", 0, "tables", ref="Tensor"),
                _v("inputs", 1, "<i4"),
                _v("outputs", 2, "<i4"),
                Field("operators", 3, "tables", ref="Operator"),
                Field("name", 4, "string"),
                _s("debug_metadata_index", 5, "i", -1),
            ),
        ),
        TableSpec(
            "Tensor",
            (
                _v("shape", 0, "<i4"),
                _s("type", 1, "b"),
                _s("buffer", 2, "I"),
                Field("name", 3, "string"),
                Field("quantization", 4, "table", ref="QuantizationParameters"),
                _s("is_variable", 5, "?", False),
                Field("sparsity", 6, "table", ref="SparsityParameters"),
                _v("shape_signature", 7, "<i4"),
                _s("has_rank", 8, "?", False),
                Field("variant_tensors", 9, "tables", ref="VariantSubType"),
            ),
        ),
        TableSpec(
            "VariantSubType",
            (_v("shape", 0, "<i4"), _s("type", 1, "b"), _s("has_rank", 2, "?", False)),
        ),
        TableSpec(
            "QuantizationParameters",
            (
                _v("min", 0, "<f4"),
                _v("max", 1, "<f4"),
                _v("scale", 2, "<f4"),
                _v("zero_point", 3, "<i8"),
                _s("details_type", 4, "B"),
                Field("details", 5, "union", ref="QuantizationDetails", type_field="details_type"),
                _s("quantized_dimension", 6, "i"),
            ),
        ),
        TableSpec("CustomQuantization", (_v("custom", 0, "u1"),)),
        TableSpec(
            "SparsityParameters",
            (
                _v("traversal_order", 0, "<i4"),
                _v("block_map", 1, "<i4"),
                Field("dim_metadata", 2, "tables", ref="DimensionMetadata"),
            ),
        ),
        TableSpec(
            "DimensionMetadata",
            (
                _s("format", 0, "b"),
                _s("dense_size", 1, "i"),
                _s("array_segments_type", 2, "B"),
                Field(
                    "array_segments",
                    3,
                    "union",
                    ref="SparseIndexVector",
                    type_field="array_segments_type",
                ),
                _s("array_indices_type", 4, "B"),
                Field(
                    "array_indices",
                    5,
                    "union",
                    ref="SparseIndexVector",
                    type_field="array_indices_type",
                ),
            ),
        ),
        TableSpec("Int32Vector", (_v("values", 0, "<i4"),)),
        TableSpec("Uint16Vector", (_v("values", 0, "<u2"),)),
        TableSpec("Uint8Vector", (_v("values", 0, "u1"),)),
        TableSpec(
            "Operator",
            (
                _s("opcode_index", 0, "I"),
                _v("inputs", 1, "<i4"),
                _v("outputs", 2, "<i4"),
                _s("builtin_options_type", 3, "B"),
                Field(
                    "builtin_options",
                    4,
                    "union",
                    ref="BuiltinOptions",
                    type_field="builtin_options_type",
                ),
                _v("custom_options", 5, "u1"),
                _s("custom_options_format", 6, "b"),
                _v("mutating_variable_inputs", 7, "?"),
                _v("intermediates", 8, "<i4"),
                _s("large_custom_options_offset", 9, "Q"),
                _s("large_custom_options_size", 10, "Q"),
                _s("builtin_options_2_type", 11, "B"),
                Field(
                    "builtin_options_2",
                    12,
                    "union",
                    ref="BuiltinOptions2",
                    type_field="builtin_options_2_type",
                ),
                _s("debug_metadata_index", 13, "i", -1),
            ),
        ),
        TableSpec("Buffer", (_v("data", 0, "u1"), _s("offset", 1, "Q"), _s("size", 2, "Q"))),
        TableSpec("Metadata", (Field("name", 0, "string"), _s("buffer", 1, "I"))),
        TableSpec("TensorMap", (Field("name", 0, "string"), _s("tensor_index", 1, "I"))),
        TableSpec(
            "SignatureDef",
            (
                Field("inputs", 0, "tables", ref="TensorMap"),
                Field("outputs", 1, "tables", ref="TensorMap"),
                Field("signature_key", 2, "string"),
                _s("subgraph_index", 4, "I"),
            ),
        ),
    ]
}

UNIONS: dict[str, dict[int, str]] = {
    "QuantizationDetails": {1: "CustomQuantization"},
    "SparseIndexVector": {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"},
    "BuiltinOptions": {c: n for c, n in OPTIONS_NAMES.items() if c},
    "BuiltinOptions2": {c: n for c, n in OPTIONS2_NAMES.items() if c},
}


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


@cache
def spec(name: str) -> TableSpec:
    """The TableSpec of a table, core or options (derived from the `tflite` package)."""
    if name in CORE_SPECS:
        return CORE_SPECS[name]
    try:
        module = sys.modules.get(f"tflite.{name}") or importlib.import_module(f"tflite.{name}")
    except ImportError:
        raise SchemaError(f"unknown table {name}") from None
    cls = getattr(module, name)
    fields = []
    prefix = f"{name}Add"
    for fn_name, fn in vars(module).items():
        if not fn_name.startswith(prefix) or not callable(fn):
            continue
        camel = fn_name[len(prefix) :]
        src = inspect.getsource(fn)
        m = re.search(r"Prepend(\w+?)Slot\((\d+),\s*[^,]+,\s*([^)]+)\)", src)
        if not m:
            raise SchemaError(f"cannot derive field {camel} of {name}")
        prepend, slot, default = m.group(1), int(m.group(2)), m.group(3).strip()
        if prepend in _PREPEND_FORMATS:
            fmt = _PREPEND_FORMATS[prepend]
            value = {"True": True, "False": False}.get(default)
            if value is None:
                value = float(default) if fmt in "fd" else int(default)
            fields.append(Field(_snake(camel), slot, "scalar", fmt, value))
            continue
        accessor = inspect.getsource(getattr(cls, camel))
        vec = getattr(cls, camel + "AsNumpy", None)
        if vec is not None:
            flags = re.search(
                r"AsNumpy\(flatbuffers\.number_types\.(\w+)Flags", inspect.getsource(vec)
            ).group(1)
            fields.append(Field(_snake(camel), slot, "vector", _FLAG_DTYPES[flags]))
        elif "self._tab.String(" in accessor:
            fields.append(Field(_snake(camel), slot, "string"))
        else:
            fields.append(Field(_snake(camel), slot, "raw"))
    return TableSpec(name, tuple(sorted(fields, key=lambda f: f.slot)))


_FLAG_DTYPES = {
    "Bool": "?",
    "Int8": "i1",
    "Uint8": "u1",
    "Int16": "<i2",
    "Uint16": "<u2",
    "Int32": "<i4",
    "Uint32": "<u4",
    "Int64": "<i8",
    "Uint64": "<u8",
    "Float32": "<f4",
    "Float64": "<f8",
}


# --------------------------------------------------------------------------- reading


def fit_width(pos: int, room: int) -> int:
    """The width of a scalar of unknown type at `pos` with `room` bytes before the next field:
    the widest of 8, 4, 2, 1 that fits and that `pos` is aligned to. A scalar's width is one
    of those, it is aligned to it and fits, so the bytes read cover it whole."""
    return max(s for s in (8, 4, 2, 1) if s <= room and pos % s == 0)


@dataclass
class RawTable:
    """An options table kept byte for byte: `inline` holds the table's data after its soffset,
    `slots` the offset of each vtable slot into the table (0 = absent)."""

    type_code: int
    inline: bytes
    slots: tuple[int, ...]

    def widths(self) -> dict[int, tuple[int, int]]:
        """slot -> (offset, width): a field runs up to the next one (widest aligned fit)."""
        present = sorted((off, slot) for slot, off in enumerate(self.slots) if off)
        end = len(self.inline) + 4
        out = {}
        for i, (off, slot) in enumerate(present):
            stop = present[i + 1][0] if i + 1 < len(present) else end
            out[slot] = (off, fit_width(off, stop - off))
        return out

    def values(self) -> dict[int, int]:
        """Each present slot's value, read little-endian at its width."""
        return {
            slot: int.from_bytes(self.inline[off - 4 : off - 4 + size], "little")
            for slot, (off, size) in self.widths().items()
        }

    def __eq__(self, other):
        return (
            isinstance(other, RawTable)
            and self.type_code == other.type_code
            and self.values() == other.values()
        )


UNKNOWN = "unknown_fields"  # a table dict's key for the fields this schema does not know
# fields older schemas had at slots the current one leaves unnamed, known to be strings:
# SignatureDef's `key` (TF 2.5-2.6 converters; `deprecated_tag` since)
HISTORIC_STRINGS = {("SignatureDef", 3)}


@dataclass(frozen=True, eq=False)
class RawField:
    """A field this schema does not know (see the module docstring): kind "inline" holds its
    inline bytes (1, 2, 4 or 8 of them, re-emitted aligned to their size); kind "string"
    holds the bytes of the string it points to."""

    kind: str
    data: bytes

    def value(self) -> int | str:
        """The value as a reader that knows the field sees it: an inline field as the
        unsigned little-endian integer of its bytes (the field's own bytes and any zero
        padding after them), a string as text."""
        if self.kind == "string":
            return self.data.decode("utf-8", "surrogateescape")
        return int.from_bytes(self.data, "little")

    def _key(self):
        # the padding a table's layout put after an inline field is zeros: not part of it
        return self.kind, self.data if self.kind == "string" else self.data.rstrip(b"\0")

    def __eq__(self, other):
        return isinstance(other, RawField) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


class Reader:
    """Bounds-checked access to a flatbuffer held in a bytes-like object."""

    def __init__(self, buf):
        self.buf = buf
        self.size = len(buf)
        self.mv = memoryview(buf)
        self.dropped: list[str] = []  # "Table slot N" of unknown offset fields not kept

    def _check(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise SchemaError(f"{what} at byte {pos} runs past the end of the file")

    def u32(self, pos: int) -> int:
        self._check(pos, 4, "offset")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def root(self) -> int:
        return self.u32(0)

    def vtable(self, table: int, what: str) -> tuple[int, ...]:
        buf, size = self.buf, self.size
        if table < 0 or table + 4 > size:
            raise SchemaError(f"{what} at byte {table} runs past the end of the file")
        vt = table - _I32(buf, table)[0]
        if vt < 0 or vt + 4 > size:
            raise SchemaError(f"{what} vtable at byte {vt} runs past the end of the file")
        vt_size, obj_size = _HH(buf, vt)
        if vt_size < 4 or vt_size % 2:
            raise SchemaError(f"{what} vtable at byte {vt} has a bad size {vt_size}")
        if vt + vt_size > size or table + obj_size > size:
            raise SchemaError(f"{what} at byte {table} runs past the end of the file")
        n = (vt_size - 4) // 2
        slots = (
            _SLOT_STRUCTS[n](buf, vt + 4)
            if n < len(_SLOT_STRUCTS)
            else struct.unpack_from(f"<{n}H", buf, vt + 4)
        )
        if slots and max(slots) >= max(obj_size, 4):
            raise SchemaError(f"{what} field offset {max(slots)} lies outside its table")
        return slots

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int, elem_size: int, what: str) -> tuple[int, int]:
        """(start, length) of the vector whose offset is stored at `pos`, bounds-checked."""
        buf, size = self.buf, self.size
        if pos + 4 > size:
            raise SchemaError(f"{what} at byte {pos} runs past the end of the file")
        start = pos + _U32(buf, pos)[0]
        if start + 4 > size:
            raise SchemaError(f"{what} at byte {start} runs past the end of the file")
        n = _U32(buf, start)[0]
        if start + 4 + n * elem_size > size:
            raise SchemaError(f"{what} at byte {start} runs past the end of the file")
        return start + 4, n

    def read_table(self, pos: int, table_spec: TableSpec, keep_unknown: bool = True) -> dict:
        """Decode the table at `pos`: present fields only (absent ones take defaults later).
        Fields the schema does not know go under UNKNOWN (or raise _UnknownField when not
        `keep_unknown`)."""
        slots = self.vtable(pos, table_spec.name)
        out = {}
        plan = table_spec.by_slot["plan"]
        buf, size = self.buf, self.size
        for slot, off in enumerate(slots):
            if not off:
                continue
            if slot >= len(plan) or plan[slot] is None:
                if not keep_unknown:
                    raise _UnknownField(table_spec.name, slot)
                unknown = self.unknown_field(pos, slots, slot, table_spec)
                if unknown is not None:
                    out.setdefault(UNKNOWN, {})[slot] = unknown
                continue
            f, kind, extra = plan[slot]
            at = pos + off
            if kind == "scalar":
                if at + extra.size > size:
                    raise SchemaError(f"{f.name} at byte {at} runs past the end of the file")
                out[f.name] = extra.unpack_from(buf, at)[0]
            elif kind == "vector":
                start, n = self.vector(at, extra.itemsize, f.name)
                out[f.name] = np.frombuffer(self.mv, extra, n, start)
            elif kind == "string":
                start, n = self.vector(at, 1, f.name)
                out[f.name] = bytes(self.mv[start : start + n]).decode("utf-8", "surrogateescape")
            elif kind == "table":
                out[f.name] = self.read_table(self.indirect(at), spec(f.ref))
            elif kind == "tables":
                start, n = self.vector(at, 4, f.name)
                sub = spec(f.ref)
                read = self.read_table
                offs = struct.unpack_from(f"<{n}I", buf, start) if n else ()
                out[f.name] = [read(start + 4 * i + o, sub) for i, o in enumerate(offs)]
            elif kind == "union":
                out[f.name] = self.read_union(self.indirect(at), f.ref, out.get(f.type_field, 0))
            else:
                raise _UnknownField(table_spec.name, slot)
        return out

    def read_union(self, pos: int, union: str, type_code: int):
        name = UNIONS[union].get(type_code)
        if name is not None:
            try:
                return Options(name, self.read_table(pos, spec(name), keep_unknown=False))
            except _UnknownField:
                pass
        return self.raw_table(pos, type_code)

    def raw_table(self, pos: int, type_code: int) -> RawTable:
        slots = self.vtable(pos, "options table")
        obj_size = self.table_size(pos)
        return RawTable(type_code, bytes(self.mv[pos + 4 : pos + obj_size]), tuple(slots))

    def table_size(self, pos: int) -> int:
        """The inline size of the table at `pos` (after vtable() checked it)."""
        return _HH(self.buf, pos - _I32(self.buf, pos)[0])[1]

    def unknown_field(self, pos: int, slots, slot: int, table_spec: TableSpec) -> RawField | None:
        """The unknown field `slot` of the table at `pos`, judged as the module docstring
        says; None (and a note in `dropped`) for an offset to data of unknown shape."""
        end = self.table_size(pos)
        off = slots[slot]
        stop = min((o for o in slots if o > off), default=end)
        at = pos + off
        width = fit_width(at, stop - off)
        target = at + _U32(self.buf, at)[0] if width >= 4 else -1
        points_out = target % 4 == 0 and pos + end <= target and target + 4 <= self.size
        name = table_spec.name
        if (name, slot) in HISTORIC_STRINGS:
            text = self._string_at(target, strict=False) if points_out else None
            if text is None:
                raise SchemaError(f"{name} field {slot} at byte {at} is not a string")
            return RawField("string", text)
        if points_out and target not in self._known_targets(pos, slots, table_spec):
            text = self._string_at(target, strict=True)
            if text is not None:
                return RawField("string", text)
            self.dropped.append(f"{name} slot {slot}")
            return None
        return RawField("inline", bytes(self.mv[at : at + width]))

    def _known_targets(self, pos: int, slots, table_spec: TableSpec) -> set[int]:
        """Where the known offset fields of the table at `pos` point (an unknown field
        pointing there too is a scalar that happens to: each object has one referrer)."""
        plan = table_spec.by_slot["plan"]
        return {
            pos + o + self.u32(pos + o)
            for s, o in enumerate(slots)
            if o and s < len(plan) and plan[s] is not None and plan[s][1] != "scalar"
        }

    def _string_at(self, pos: int, strict: bool) -> bytes | None:
        """The bytes of a well-formed string at `pos` (length, bytes, NUL), else None;
        `strict`: only UTF-8 text without NUL counts (TFLite's strings are names)."""
        n = _U32(self.buf, pos)[0]
        if pos + 4 + n >= self.size or self.buf[pos + 4 + n] != 0:
            return None
        text = bytes(self.mv[pos + 4 : pos + 4 + n])
        if strict:
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if b"\0" in text:
                return None
        return text


class _UnknownField(SchemaError):
    def __init__(self, table: str, slot: int):
        super().__init__(f"{table} has a field (slot {slot}) this schema does not know")


# --------------------------------------------------------------------------- writing

_UNION_CODES = {union: {n: c for c, n in members.items()} for union, members in UNIONS.items()}


def union_type_code(union: str, value) -> int:
    if isinstance(value, RawTable):
        return value.type_code
    return _UNION_CODES[union][value.kind]


def write_table(builder: flatbuffers.Builder, table_spec: TableSpec, values: dict) -> int:
    """Encode `values` (a dict as read_table returns, offsets for nested objects may be given
    pre-built as `Offset` instances) and return the table's offset.

    Fields are placed directly in the builder's buffer (what Prepend*Slot does, without its
    per-call checks); values equal to the schema default are omitted, as flatc does."""
    offsets = []
    scalars = dict(values)
    for f in table_spec.by_slot["offsets"]:
        v = values.get(f.name)
        if f.kind == "union":
            scalars[f.type_field] = 0 if v is None else union_type_code(f.ref, v)
        if v is None:
            continue
        if isinstance(v, Offset):
            off = v.value
        elif f.kind == "vector":
            off = builder.CreateNumpyVector(np.ascontiguousarray(v, f.fmt))
        elif f.kind == "string":
            off = builder.CreateString(v.encode("utf-8", "surrogateescape"))
        elif f.kind == "table":
            off = write_table(builder, spec(f.ref), v)
        elif f.kind == "tables":
            off = write_offset_vector(builder, [write_table(builder, spec(f.ref), x) for x in v])
        elif f.kind == "union":
            off = write_union(builder, v)
        else:
            continue
        offsets.append((f.slot, off))
    unknown = values.get(UNKNOWN) or {}
    inline = []
    for slot, raw in unknown.items():
        if raw.kind == "string":
            offsets.append((slot, builder.CreateString(raw.data)))
        else:
            inline.append((slot, raw))
    builder.StartObject(max(table_spec.num_slots, max(unknown, default=-1) + 1))
    vtable = builder.current_vtable
    for slot, off in offsets:
        builder.Prep(4, 0)
        builder.head -= 4
        _U32_STRUCT.pack_into(builder.Bytes, builder.head, len(builder.Bytes) - builder.head - off)
        vtable[slot] = len(builder.Bytes) - builder.head
    for slot, raw in inline:
        builder.Prep(len(raw.data), 0)
        builder.head -= len(raw.data)
        builder.Bytes[builder.head : builder.head + len(raw.data)] = raw.data
        vtable[slot] = len(builder.Bytes) - builder.head
    for f, st in table_spec.by_slot["scalars"]:
        v = scalars.get(f.name)
        if v is None or v == f.default:
            continue
        builder.Prep(st.size, 0)
        builder.head -= st.size
        st.pack_into(builder.Bytes, builder.head, v)
        vtable[f.slot] = len(builder.Bytes) - builder.head
    return builder.EndObject()


_U32_STRUCT = struct.Struct("<I")


def write_union(builder: flatbuffers.Builder, value) -> int:
    if isinstance(value, RawTable):
        return write_raw_table(builder, value)
    return write_table(builder, spec(value.kind), value)


def write_offset_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def write_raw_table(builder: flatbuffers.Builder, raw: RawTable) -> int:
    """Re-emit a table of scalars, each slot's value at its original width and place."""
    values = raw.values()
    builder.StartObject(len(raw.slots))
    # prepending from the highest offset down keeps the original layout
    for slot, (_, width) in sorted(raw.widths().items(), key=lambda kv: -kv[1][0]):
        # always written, even when it equals a default: Prepend<T>, then Slot
        prepend = {1: "PrependUint8", 2: "PrependUint16", 4: "PrependUint32", 8: "PrependUint64"}[
            width
        ]
        getattr(builder, prepend)(values[slot])
        builder.Slot(slot)
    return builder.EndObject()


@dataclass(frozen=True)
class Offset:
    """A pre-built flatbuffer offset, to pass through write_table unchanged."""

    value: int


class Options(dict):
    """A decoded options table: a dict of field values with the table's name in `.kind`."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, *args, **fields):
        super().__init__(*args, **fields)
        self.kind = kind

    def __repr__(self):
        return f"{self.kind}({dict.__repr__(self)})"

    def __eq__(self, other):
        if not isinstance(other, Options) or other.kind != self.kind:
            return False
        fields = {f.name: f for f in spec(self.kind).fields}
        for name in set(self) | set(other):
            a, b = self.get(name, fields[name].default), other.get(name, fields[name].default)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None

    def full(self) -> dict:
        """Every field, defaults filled in."""
        return {f.name: self.get(f.name, f.default) for f in spec(self.kind).fields}


@cache
def option_defaults(kind: str) -> dict[str, object]:
    """Field name -> what an absent field of options table `kind` means: the schema default
    of a scalar, None for a vector, string or table."""
    return {f.name: f.default if f.kind == "scalar" else None for f in spec(kind).fields}


class OptionsError(SchemaError):
    """An options table or value the schema does not allow (a typo in a field or enum name)."""


# fields of options tables whose values are an enum of the `tflite` package (a field name means
# the same enum in every options table that has it); values may be given by name: padding="SAME"
ENUM_FIELDS: dict[str, str] = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "kernel_type": "LSTMKernelType",
    "combiner": "CombinerType",
    "type": "LSHProjectionType",
    "mode": "MirrorPadMode",
    "reduce_function": "ReduceWindowFunction",
    "algorithm": "RngAlgorithm",
    "comparison_direction": "StablehloComparisonDirection",
    "compare_type": "StablehloComparisonType",
    "composite_attributes_format": "CustomOptionsFormat",
    **dict.fromkeys(
        ("in_data_type", "out_data_type", "out_type", "output_type", "idx_out_type",
         "quantized_bias_type", "key_dtype", "value_dtype"),
        "TensorType",
    ),
}  # fmt: skip


@cache
def enum_codes(field_name: str) -> dict[str, int]:
    """Name -> code of the enum an option field holds ({} for a plain number)."""
    enum = ENUM_FIELDS.get(field_name)
    if enum is None:
        return {}
    module = importlib.import_module(f"tflite.{enum}")
    return {n: c for c, n in _enum(getattr(module, enum)).items()}


# ops whose options table is not named after the op (CONV_2D -> Conv2DOptions is)
_OPTIONS_OF_OP = {
    **dict.fromkeys(("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"), "Pool2DOptions"),
    **dict.fromkeys(("MAXIMUM", "MINIMUM"), "MaximumMinimumOptions"),
    **dict.fromkeys(
        ("MEAN", "SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_ANY", "REDUCE_ALL"),
        "ReducerOptions",
    ),
    **dict.fromkeys(("RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL"), "RandomOptions"),
    "L2_NORMALIZATION": "L2NormOptions",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
    "CONV_3D_TRANSPOSE": "Conv3DOptions",
}


@cache
def options_kind(op_type: str) -> str | None:
    """The options table of a builtin op ('CONV_2D' -> 'Conv2DOptions'), None if it has none."""
    if op_type in _OPTIONS_OF_OP:
        return _OPTIONS_OF_OP[op_type]
    camel = "".join(p.capitalize() for p in op_type.split("_")).lower() + "options"
    kinds = (k for k in (*OPTIONS_CODES, *OPTIONS2_CODES) if k != "NONE")
    return next((k for k in kinds if k.lower() == camel), None)


def option_value(kind: str, f: Field, value):
    """`value` checked for the field `f` of table `kind`: an enum name becomes its code; a
    value the field cannot hold raises OptionsError naming the field (and the valid names)."""
    is_options = kind in OPTIONS_CODES or kind in OPTIONS2_CODES
    codes = enum_codes(f.name) if f.kind == "scalar" and is_options else {}
    if codes:
        if isinstance(value, str) and value.upper() in codes:
            return codes[value.upper()]
        if not isinstance(value, (str, bool)) and value in codes.values():
            return value
        raise OptionsError(
            f"{kind}.{f.name}: {value!r} is not a {ENUM_FIELDS[f.name]}"
            f"{did_you_mean(value, codes)}; valid: {', '.join(codes)}"
        )
    if f.kind == "scalar" and not _is_subgraph_field(kind, f.name):  # those hold a Subgraph
        try:
            _STRUCTS[f.fmt].pack(value)
        except struct.error:
            what = {"?": "a bool", "f": "a float32", "d": "a float64"}.get(f.fmt)
            what = what or f"an integer of {_STRUCTS[f.fmt].size * 8} bits"
            raise OptionsError(f"{kind}.{f.name} holds {what}, not {value!r}") from None
    return value


def new_options(kind: str, **fields) -> Options:
    """Options for a builtin op, checked against the schema (e.g. new_options('AddOptions')):
    unknown field names and values a field cannot hold raise OptionsError; enum fields take
    names (padding="SAME") as well as codes."""
    table = {f.name: f for f in spec(kind).fields}
    for name in fields:
        if name not in table:
            raise OptionsError(
                f"{kind} has no field {name!r}{did_you_mean(name, table)}; "
                f"fields: {', '.join(table) or 'none'}"
            )
    return Options(kind, {name: option_value(kind, table[name], v) for name, v in fields.items()})


FILE_IDENTIFIER = b"TFL3"  # the four bytes after the root offset of every .tflite file

SUBGRAPH_FIELDS = {"CallOptions": ("subgraph",)}


def subgraph_fields(opts: Options) -> list[str]:
    """Fields of an options table that hold a subgraph index."""
    return [f.name for f in spec(opts.kind).fields if _is_subgraph_field(opts.kind, f.name)]


def _is_subgraph_field(kind: str, name: str) -> bool:
    return name.endswith("subgraph_index") or name in SUBGRAPH_FIELDS.get(kind, ())
