"""load -> save -> load is lossless, and the runtimes cannot tell the files apart."""

import numpy as np
import pytest
from helpers import all_fixtures, assert_same_outputs

import tflgraph
from tflgraph.io.schema import Reader, spec
from tflgraph.runtime import runtimes
from tflgraph.tools.compare import model_diff

FIXTURES = all_fixtures()


def ids(paths):
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", FIXTURES, ids=ids(FIXTURES))
def test_load_save_load_is_identical_field_by_field(path):
    original = tflgraph.load(path)
    again = tflgraph.load(tflgraph.to_bytes(original))
    assert model_diff(original, again) == []
    # and a second round trip is byte-identical to the first
    assert tflgraph.to_bytes(again) == tflgraph.to_bytes(original)


def _buffer_data_offsets(data: bytes) -> list[tuple[int, int]]:
    r = Reader(data)
    model = r.read_table(r.root(), spec("Model"))
    base = np.frombuffer(r.mv, np.uint8).ctypes.data
    out = []
    for b in model.get("buffers", []):
        d = b.get("data")
        if d is not None and len(d):
            out.append((d.ctypes.data - base, len(d)))
    return out


@pytest.mark.parametrize("path", FIXTURES, ids=ids(FIXTURES))
def test_saved_file_is_aligned_and_no_larger(path):
    data = path.read_bytes()
    saved = tflgraph.to_bytes(tflgraph.load(path))
    offsets = _buffer_data_offsets(saved)
    assert all(pos % 16 == 0 for pos, _ in offsets), "every buffer's data is 16-byte aligned"
    # buffer 0 stays empty
    r = Reader(saved)
    first = r.read_table(r.root(), spec("Model"))["buffers"][0]
    assert first.get("data") is None or len(first["data"]) == 0
    padding_allowance = 16 * (len(offsets) + 2)
    assert len(saved) <= len(data) + padding_allowance


def _runs(path, runtime):
    """Whether the runtime runs the converter's file at all (TFLM hangs on some loops)."""
    data = path.read_bytes()
    try:
        feeds = [
            runtimes.random_inputs(runtimes.Session(data, runtime).inputs, np.random.default_rng(0))
        ]
        runtimes.run_isolated(data, feeds, runtime, timeout=20, modes=("no-reset",))
        return True
    except runtimes.RuntimeUnavailable:
        return False


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
@pytest.mark.parametrize("path", FIXTURES, ids=ids(FIXTURES))
def test_runtime_outputs_are_bit_identical(path, runtime):
    if not _runs(path, runtime):
        pytest.skip(f"{runtime} cannot run {path.name} as converted")
    saved = tflgraph.to_bytes(tflgraph.load(path))
    assert_same_outputs(path, saved, runtime_names=(runtime,), samples=3, exact=True)


def test_external_buffers_round_trip(tmp_path):
    """Models over 2 GB keep buffers after the flatbuffer (Buffer.offset/size)."""
    src = tflgraph.load(FIXTURES[0].parent / "cnn.tflite")
    path = tmp_path / "external.tflite"
    tflgraph.save(src, path, external_buffers=True)
    data = path.read_bytes()
    r = Reader(data)
    buffers = r.read_table(r.root(), spec("Model"))["buffers"]
    external = [b for b in buffers if b.get("offset", 0) > 1]
    assert external and all(b.get("data") is None for b in buffers)
    assert all(b["offset"] % 16 == 0 for b in external)
    back = tflgraph.load(path)
    assert model_diff(src, back) == []
    assert_same_outputs(
        FIXTURES[0].parent / "cnn.tflite", data, runtime_names=("litert",), exact=True
    )


def test_unknown_options_table_and_op_survive():
    """An op code and an options table this schema does not know are written back unchanged."""
    from tflgraph.io.schema import RawTable

    model = tflgraph.load(FIXTURES[0].parent / "mlp.tflite")
    op = model.main.operators[0]
    op.options = RawTable(type_code=250, inline=bytes([1, 0, 0, 0, 7, 0, 0, 0]), slots=(4, 8))
    op.opcode = 600  # beyond every known builtin
    again = tflgraph.load(tflgraph.to_bytes(model))
    op2 = again.main.operators[0]
    assert op2.opcode == 600 and op2.type == "OP_600"
    assert op2.options == op.options
    assert model_diff(model, again) == []


def test_saved_file_keeps_buffer_sharing_and_dedupes():
    model = tflgraph.load(FIXTURES[0].parent / "mlp.tflite")
    sg = model.main
    w = next(t for t in sg.tensors if t.is_constant)
    dup = sg.new_constant(np.array(w.data))  # same bytes, a different Buffer object
    fc = sg.consumers(w)[0]
    sg.set_input(fc, fc.inputs.index(w), dup)
    n_before = len(
        _buffer_data_offsets(tflgraph.to_bytes(tflgraph.load(FIXTURES[0].parent / "mlp.tflite")))
    )
    assert len(_buffer_data_offsets(tflgraph.to_bytes(model))) == n_before
