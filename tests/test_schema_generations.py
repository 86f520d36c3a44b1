"""Files of any schema generation load and save losslessly: fields the schema does not know
(an older converter's SignatureDef string, fields newer than the `tflite` package) in any
table come back with the same value, and LiteRT, which ignores them, runs the saved file with
the original's outputs. The files are built with the flatbuffers Builder alone (not
tflgraph's writer), and the saved bytes are read back with the `tflite` package's accessors."""

import flatbuffers
import pytest
from flatbuffers import number_types as nt
from helpers import assert_same_outputs, fixture, tflgraph_cli
from tflite.Model import Model as FbModel

import tflgraph
from tflgraph.io.schema import OP_CODES, UNKNOWN, RawField, Reader, spec
from tflgraph.tools.compare import model_diff

# (slot, flatbuffers type, value) of the extra scalar fields, per table; the slots lie beyond
# the tflite 2.18 schema's (Model 8, SubGraph 6, Tensor 10, Operator 14 fields) and beyond the
# installed LiteRT's (its Model has offsets at slots 8 and 9, which the verifier checks)
EXTRA = {
    "Model": [(12, "Float32", 1.5)],
    "SubGraph": [(8, "Bool", True)],
    "Tensor": [(12, "Int16", -2), (13, "Uint64", 2**40 + 3)],
    "Operator": [(20, "Int32", 7), (21, "Uint8", 200)],
    "SignatureDef": [(6, "Int64", -(2**33))],
    "OperatorCode": [(7, "Uint16", 513)],
}
OLD_KEY = "serving_default_v1"  # SignatureDef slot 3: `key` in TF 2.5-2.6 converters


def _table(b, fields):
    """A table of (slot, kind, value): kind "offset" or a flatbuffers scalar type name; every
    value is written, defaults included."""
    b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
    for slot, kind, value in fields:
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            getattr(b, f"Prepend{kind}Slot")(slot, value, None)
    return b.EndObject()


def _ints(b, values):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _tables(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def older_converter_model(extra=True, unkept=False) -> bytes:
    """z = x + x for x of shape [1, 4], in the older converters' form (SignatureDef with
    strings at slots 2 and 3), with EXTRA's fields when `extra`; `unkept` adds fields the
    reader cannot keep: an offset to an int vector at Tensor slot 14 (data of a shape it
    cannot know) and a scalar at Buffer slot 5 (the IR's buffers are plain data)."""
    b = flatbuffers.Builder(1024)
    more = {name: fields if extra else [] for name, fields in EXTRA.items()}
    tensors = []
    for i, name in enumerate(("x", "z")):
        fields = [(0, "offset", _ints(b, [1, 4])), (3, "offset", b.CreateString(name))]
        if unkept and i == 0:
            fields.append((14, "offset", _ints(b, [5, 6, 7])))
        tensors.append(_table(b, fields + [(1, "Int8", 0), (2, "Uint32", 0)] + more["Tensor"]))
    op = _table(
        b,
        [(1, "offset", _ints(b, [0, 0])), (2, "offset", _ints(b, [1])), (0, "Uint32", 0)]
        + more["Operator"],
    )
    sg = _table(
        b,
        [
            (0, "offset", _tables(b, tensors)),
            (1, "offset", _ints(b, [0])),
            (2, "offset", _ints(b, [1])),
            (3, "offset", _tables(b, [op])),
            (4, "offset", b.CreateString("main")),
        ]
        + more["SubGraph"],
    )
    code = _table(
        b,
        [(0, "Int8", OP_CODES["ADD"]), (2, "Int32", 1), (3, "Int32", OP_CODES["ADD"])]
        + more["OperatorCode"],
    )
    maps = [
        _table(b, [(0, "offset", b.CreateString(n)), (1, "Uint32", i)])
        for i, n in enumerate(("x", "z"))
    ]
    sig = _table(
        b,
        [
            (0, "offset", _tables(b, maps[:1])),
            (1, "offset", _tables(b, maps[1:])),
            (2, "offset", b.CreateString("serving_default")),
            (3, "offset", b.CreateString(OLD_KEY)),
            (4, "Uint32", 0),
        ]
        + more["SignatureDef"],
    )
    buffers = [_table(b, [(5, "Int32", 9)] if unkept else [])]
    root = _table(
        b,
        [
            (1, "offset", _tables(b, [code])),
            (2, "offset", _tables(b, [sg])),
            (4, "offset", _tables(b, buffers)),
            (7, "offset", _tables(b, [sig])),
            (0, "Uint32", 3),
        ]
        + more["Model"],
    )
    b.Finish(root, file_identifier=b"TFL3")
    return bytes(b.Output())


def _tables_of(data: bytes) -> dict:
    """Table name -> the flatbuffers Table objects of that name in `data` (tflite accessors)."""
    m = FbModel.GetRootAs(data, 0)
    sg = m.Subgraphs(0)
    return {
        "Model": [m._tab],
        "SubGraph": [sg._tab],
        "Tensor": [sg.Tensors(i)._tab for i in range(sg.TensorsLength())],
        "Operator": [sg.Operators(0)._tab],
        "OperatorCode": [m.OperatorCodes(0)._tab],
        "SignatureDef": [m.SignatureDefs(0)._tab],
    }


def _raw(tab, slot, kind):
    """The value at `slot` of a flatbuffers Table, read as `kind` (None when absent)."""
    o = tab.Offset(4 + 2 * slot)
    if not o:
        return None
    if kind == "String":
        return tab.String(o + tab.Pos).decode()
    return tab.Get(getattr(nt, kind + "Flags"), o + tab.Pos)


def assert_extra_fields(data: bytes) -> None:
    """Every EXTRA field and the old SignatureDef key are in `data` with their values."""
    tables = _tables_of(data)
    for name, fields in EXTRA.items():
        for tab in tables[name]:
            for slot, kind, value in fields:
                assert _raw(tab, slot, kind) == value, (name, slot)
    assert _raw(tables["SignatureDef"][0], 3, "String") == OLD_KEY


def test_builder_model_has_the_fields_and_runs_in_litert():
    """The test's own file: the fields are there, and LiteRT (ignoring them) runs it like the
    same model without them."""
    data = older_converter_model()
    assert_extra_fields(data)
    assert_same_outputs(older_converter_model(extra=False), data, ("litert",), exact=True)


def test_unknown_fields_are_kept_on_load():
    model = tflgraph.load(older_converter_model())
    assert model.dropped_fields == []
    sd = model.signature_defs[0]
    assert sd.key == "serving_default"
    assert sd.unknown_fields[3] == RawField("string", OLD_KEY.encode())
    assert sd.unknown_fields[6].value() == 2**64 - 2**33  # the int64's bytes, as unsigned
    x = model.main.inputs[0]
    assert x.unknown_fields[12].value() & 0xFFFF == 2**16 - 2
    assert x.unknown_fields[13].value() == 2**40 + 3
    op = model.main.operators[0]
    assert op.unknown_fields[20].value() & 0xFFFFFFFF == 7
    assert model.main.unknown_fields[8].value() & 0xFF == 1
    assert op.code_unknown_fields[7].value() & 0xFFFF == 513


def test_load_optimize_save_keeps_every_field(tmp_path):
    src, out = tmp_path / "old.tflite", tmp_path / "old.opt.tflite"
    src.write_bytes(older_converter_model())
    result = tflgraph_cli("optimize", src, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    saved = out.read_bytes()
    assert_extra_fields(saved)
    assert model_diff(tflgraph.load(src), tflgraph.load(saved)) == []
    assert tflgraph.to_bytes(tflgraph.load(saved)) == saved  # a fixed point
    assert_same_outputs(src, saved, ("litert",), exact=True)


def test_a_changed_unknown_field_is_a_difference():
    """model_diff sees unknown fields (the comparison above cannot pass by ignoring them)."""
    a = tflgraph.load(older_converter_model())
    b = tflgraph.load(older_converter_model())
    b.main.inputs[0].unknown_fields[12] = RawField("inline", b"\x01\x00")
    assert any("unknown_fields" in d for d in model_diff(a, b))


def test_fields_that_cannot_be_kept_are_dropped_with_one_warning(tmp_path):
    src, out = tmp_path / "vec.tflite", tmp_path / "vec.opt.tflite"
    src.write_bytes(older_converter_model(unkept=True))
    assert tflgraph.load(src).dropped_fields == ["Tensor slot 14", "Buffer slot 5"]
    result = tflgraph_cli("optimize", src, "-o", out)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines(keepends=True)
    assert len(warnings) == 1 and warnings[0].endswith("\n")
    assert warnings[0].startswith("tflgraph: warning:")
    assert "Tensor slot 14, Buffer slot 5" in warnings[0]
    saved = out.read_bytes()
    x = _tables_of(saved)["Tensor"][0]
    assert x.Offset(4 + 2 * 14) == 0  # dropped, not written back as a dangling offset
    assert tflgraph.load(saved).dropped_fields == []
    assert_extra_fields(saved)  # everything else is kept
    assert_same_outputs(src, saved, ("litert",), exact=True)


@pytest.mark.parametrize("name, rewritten", [("cnn_int8", False), ("k3_lstm", True)])
def test_real_fixture_with_unknown_fields_round_trips(tmp_path, name, rewritten):
    """A converter's file with fields newer than the schema in every kind of table (the
    quantization table too): optimize keeps them on everything it keeps (a tensor or op that a
    pass made is new and has none), and LiteRT's outputs are the fixture's."""
    model = tflgraph.load(fixture(name))
    scalar = RawField("inline", (2**40 + 5).to_bytes(8, "little"))
    text = RawField("string", b"from a newer converter")
    model.unknown_fields = {30: scalar}
    for sg in model.subgraphs:
        sg.unknown_fields = {12: text}
        for t in sg.tensors:
            t.unknown_fields = {20: scalar}
            if t.quantization:
                t.quantization = {**t.quantization, UNKNOWN: {12: scalar}}
        for op in sg.operators:
            op.unknown_fields = {30: scalar, 31: text}
    src, out = tmp_path / "src.tflite", tmp_path / "out.tflite"
    tflgraph.save(model, src)
    m = FbModel.GetRootAs(src.read_bytes(), 0)
    assert _raw(m._tab, 30, "Uint64") == 2**40 + 5  # the fields are really in the file
    assert _raw(m.Subgraphs(0).Operators(0)._tab, 31, "String") == "from a newer converter"
    result = tflgraph_cli("optimize", src, "-o", out)
    assert result.returncode == 0, result.stderr
    loaded = tflgraph.load(out)
    assert loaded.unknown_fields == {30: scalar}
    assert all(sg.unknown_fields == {12: text} for sg in loaded.subgraphs)
    assert all(t.unknown_fields == {20: scalar} for t in loaded.main.inputs)
    for sg in loaded.subgraphs:
        for t in sg.tensors:
            assert t.unknown_fields == {20: scalar} or (rewritten and t.unknown_fields is None)
            if t.quantization:
                assert t.quantization.get(UNKNOWN) == {12: scalar}
        for op in sg.operators:
            fields = op.unknown_fields
            assert fields == {30: scalar, 31: text} or (rewritten and fields is None)
    assert rewritten == (model_diff(tflgraph.load(src), loaded) != [])
    assert_same_outputs(fixture(name), out, ("litert",), exact=not rewritten)


def _tensor_table(value: int, name_slot: int) -> bytes:
    """A lone Tensor table: its name string (at `name_slot`) and a uint32 `value` at slot 12."""
    b = flatbuffers.Builder(64)
    name = b.CreateString("x")
    b.Finish(_table(b, [(name_slot, "offset", name), (12, "Uint32", value)]))
    return bytes(b.Output())


@pytest.mark.parametrize("name_slot, kept_as", [(3, "inline"), (13, "string")])
def test_a_number_that_points_at_a_known_fields_data_is_a_number(name_slot, kept_as):
    """An unknown uint32 whose value, read as an offset, reaches the table's name string: a
    known field (the name, slot 3) points there, so it is a number and kept as one; when only
    unknown fields point there (slot 13), it reads as an offset to that string."""
    data = _tensor_table(0, name_slot)
    r = Reader(data)
    pos = r.root()
    slots = r.vtable(pos, "Tensor")
    value = pos + slots[name_slot] + r.u32(pos + slots[name_slot]) - (pos + slots[12])
    data = _tensor_table(value, name_slot)
    table = Reader(data).read_table(pos, spec("Tensor"))
    field = table[UNKNOWN][12]
    assert field.kind == kept_as
    assert field.value() == (value if kept_as == "inline" else "x")
