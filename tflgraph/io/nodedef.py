"""The TensorFlow op inside a Flex custom op: its name and NodeDef attributes.

A Flex op (custom code "Flex<Op>") carries in its custom options a flexbuffer vector of two
strings: the TensorFlow op name and the op's serialized NodeDef (protobuf). `flex_node(op)`
decodes both, with a small protobuf wire-format reader for the NodeDef fields that say what
the op computes: `op`, `name`, `input` and the `attr` map (type, shape, int, float, bool,
string and list values; a tensor or function attribute is kept as its raw bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# tensorflow/core/framework/types.proto DataType numbers -> dtype names
_DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
    19: "float16", 20: "resource", 21: "variant", 22: "uint32", 23: "uint64",
}  # fmt: skip


class NodeDefError(ValueError):
    """The custom options are not a Flex op's [op name, NodeDef] pair."""


@dataclass
class FlexNode:
    """A Flex op's TensorFlow op: `op` (e.g. "Erf"), the node `name`, its `inputs` and
    `attrs` (name -> a Python value: dtype names for types, tuples of ints for shapes with
    -1 for an unknown size and None for an unknown rank)."""

    op: str
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        """`Op(attr=value, ...)`, sorted by attribute name, on one line."""
        shown = ", ".join(f"{k}={_show(v)}" for k, v in sorted(self.attrs.items()))
        return f"{self.op}({shown})"


def flex_node(custom_options) -> FlexNode:
    """Decode a Flex op's custom options; raises NodeDefError on anything else."""
    from flatbuffers import flexbuffers

    try:
        items = flexbuffers.GetRoot(bytes(custom_options)).AsVector
        op_name = items[0].AsString
        data = items[1].AsStringBytes
    except Exception as e:  # flexbuffers raises TypeError/IndexError/struct.error
        raise NodeDefError(f"not a Flex op's options: {e}") from None
    try:
        return _node_def(op_name, data)
    except (ValueError, TypeError, IndexError) as e:  # NodeDefError is a ValueError
        raise NodeDefError(f"{op_name}: malformed NodeDef: {e}") from None


def _node_def(op_name: str, data: bytes) -> FlexNode:
    node = FlexNode(op_name)
    for number, value in _fields(data):
        if number == 1:
            node.name = _text(value)
        elif number == 2:
            node.op = _text(value) or op_name
        elif number == 3:
            node.inputs.append(_text(value))
        elif number == 5:
            key, attr = "", None
            for n, v in _fields(value):
                if n == 1:
                    key = _text(v)
                elif n == 2:
                    attr = _attr_value(v)
            node.attrs[key] = attr
    return node


# --------------------------------------------------------------------------- protobuf


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise NodeDefError("NodeDef ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise NodeDefError("NodeDef varint longer than 64 bits")


def _fields(data: bytes):
    """(field number, value) pairs: ints for varint and fixed fields, bytes for the rest."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise NodeDefError(f"NodeDef field {number} has wire type {wire}")
        if pos > len(data):
            raise NodeDefError("NodeDef ends inside a field")
        yield number, value


def _text(value) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _dtype(v: int) -> str:
    return _DTYPES.get(v, f"DataType({v})")


def _shape(data: bytes) -> tuple[int, ...] | None:
    """A TensorShapeProto: its sizes (-1 unknown), or None for an unknown rank."""
    dims: list[int] = []
    for n, v in _fields(data):
        if n == 2:
            size = next((_signed(s) for k, s in _fields(v) if k == 1), 0)
            dims.append(size)
        elif n == 3 and v:
            return None
    return tuple(dims)


def _packed_or_single(value) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _attr_value(data: bytes):
    for n, v in _fields(data):
        if n == 1:
            return _list_value(v)
        if n == 2:
            return _text(v)
        if n == 3:
            return _signed(v)
        if n == 4:
            return float(np.frombuffer(v, "<f4")[0])
        if n == 5:
            return bool(v)
        if n == 6:
            return _dtype(v)
        if n == 7:
            return _shape(v)
        if n in (8, 10):
            return bytes(v)  # a tensor or a function: kept as its bytes
        if n == 9:
            return f"${_text(v)}"  # a placeholder
    return None


def _list_value(data: bytes) -> list:
    out: list = []
    for n, v in _fields(data):
        if n == 2:
            out.append(_text(v))
        elif n == 3:
            out.extend(_signed(x) for x in _packed_or_single(v))
        elif n == 4:  # packed, or one fixed32: bytes either way
            out.extend(float(x) for x in np.frombuffer(v, "<f4"))
        elif n == 5:
            out.extend(bool(x) for x in _packed_or_single(v))
        elif n == 6:
            out.extend(_dtype(x) for x in _packed_or_single(v))
        elif n == 7:
            out.append(_shape(v))
        else:
            out.append(bytes(v))
    return out


def _show(v) -> str:
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if v is None:
        return "?"
    if isinstance(v, tuple):  # a shape
        return "[" + ", ".join("?" if x < 0 else str(x) for x in v) + "]"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)
