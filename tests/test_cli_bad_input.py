"""Bad input: one line on stderr naming the file, exit 2, no traceback, input untouched,
no partial output."""

import hashlib
import os
import shutil
import subprocess
import sys

import flatbuffers
import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.io.schema import (
    UNKNOWN,
    Offset,
    Options,
    RawField,
    spec,
    write_offset_vector,
    write_table,
)


def run_cli(*args, cwd=None, user=None):
    cmd = [sys.executable, "-m", "tflgraph", *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def stderr_lines(result) -> list[str]:
    """The lines on stderr, each checked to be one message ('tflgraph: ...') ended by a
    newline: no message runs into the next or leaves the terminal mid-line."""
    lines = result.stderr.splitlines(keepends=True)
    for line in lines:
        assert line.endswith("\n"), repr(result.stderr)
        assert line.startswith("tflgraph: ") and line.count("tflgraph: ") == 1, repr(line)
    return lines


def assert_clean_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("tflgraph: error:")
    for w in words:
        assert w in lines[0], lines[0]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raw_model(tensor_buffer=0, while_subgraph=None, n_buffers=1, buffer_fields=None) -> bytes:
    """A tiny model written table by table, so that it can refer to things it lacks
    (`buffer_fields`: unknown fields of its buffers, which the reader cannot keep)."""
    b = flatbuffers.Builder(1024)
    tensors = [
        {"shape": np.array([1], np.int32), "type": 0, "buffer": tensor_buffer, "name": f"t{i}"}
        for i in range(2)
    ]
    ops = []
    codes = [{"builtin_code": 0, "deprecated_builtin_code": 0}]  # ADD
    if while_subgraph is not None:
        codes = [{"builtin_code": 119, "deprecated_builtin_code": 119}]  # WHILE
        ops = [
            {
                "opcode_index": 0,
                "inputs": np.array([0], np.int32),
                "outputs": np.array([1], np.int32),
                "builtin_options": Options(
                    "WhileOptions",
                    cond_subgraph_index=while_subgraph,
                    body_subgraph_index=while_subgraph,
                ),
            }
        ]
    else:
        ops = [
            {
                "opcode_index": 0,
                "inputs": np.array([0, 0], np.int32),
                "outputs": np.array([1], np.int32),
            }
        ]
    sg = write_table(
        b,
        spec("SubGraph"),
        {
            "tensors": tensors,
            "inputs": np.array([0], np.int32),
            "outputs": np.array([1], np.int32),
            "operators": ops,
        },
    )
    root = write_table(
        b,
        spec("Model"),
        {
            "version": 3,
            "operator_codes": codes,
            "subgraphs": Offset(write_offset_vector(b, [sg])),
            "buffers": [{UNKNOWN: buffer_fields} for _ in range(n_buffers)],
        },
    )
    b.Finish(root, file_identifier=b"TFL3")
    return bytes(b.Output())


def test_raw_model_builder_makes_a_valid_model():
    model = tflgraph.load(_raw_model())
    assert model.op_counts() == {"ADD": 1}


CASES = {
    "empty": (lambda good: b"", ["empty"]),
    "random": (lambda good: np.random.default_rng(1).bytes(4096), ["not a TFLite model"]),
    "truncated": (lambda good: good[: len(good) // 3], []),
    "wrong_identifier": (lambda good: good[:4] + b"XXXX" + good[8:], ["identifier"]),
    "root_out_of_bounds": (lambda good: (2**31).to_bytes(4, "little") + good[4:], ["past the end"]),
    "missing_buffer": (lambda good: _raw_model(tensor_buffer=7), ["buffer 7"]),
    "missing_subgraph": (lambda good: _raw_model(while_subgraph=5), ["subgraph 5"]),
    "tiny": (lambda good: b"TFL3", ["too short"]),
    # what Keras writes: model.save("m.h5") is HDF5, model.save("m.keras") a zip archive
    "keras_h5": (lambda good: b"\x89HDF\r\n\x1a\n" + good, ["Keras HDF5", "convert it first"]),
    "keras_zip": (lambda good: b"PK\x03\x04" + good, ["a Keras 3 .keras model", "convert it"]),
}


@pytest.mark.parametrize("command", ["optimize", "inspect"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_file(tmp_path, case, command):
    make, words = CASES[case]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(make(fixture("k3_lstm").read_bytes()))
    before = digest(bad)
    out = tmp_path / "out.tflite"
    args = [command, bad] + (["-o", out] if command == "optimize" else [])
    result = run_cli(*args)
    assert_clean_error(result, str(bad), *words)
    assert digest(bad) == before
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tflite"]  # no temporary files left


def test_directory_and_missing_path(tmp_path):
    assert_clean_error(run_cli("optimize", tmp_path, "-o", tmp_path / "o.tflite"), "is a directory")
    assert_clean_error(run_cli("inspect", tmp_path / "nope.tflite"), "no such file")
    saved_model = tmp_path / "saved"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"")
    assert_clean_error(run_cli("inspect", saved_model), "a TensorFlow SavedModel", "convert it")
    assert_clean_error(
        run_cli("optimize", fixture("mlp"), "-o", tmp_path / "no" / "o.tflite"), "does not exist"
    )


@pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0,
    reason="needs root and setpriv to test as an unprivileged user",
)
def test_unreadable_file(tmp_path):
    src = tmp_path / "secret.tflite"
    shutil.copy(fixture("mlp"), src)
    src.chmod(0o000)
    tmp_path.chmod(0o777)
    result = run_cli("inspect", src, user=65534)
    assert_clean_error(result, "permission denied")


def test_output_equal_to_input_is_refused_unless_in_place(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(fixture("mlp"), model)
    before = digest(model)
    assert_clean_error(run_cli("optimize", model, "-o", model), "--in-place")
    assert digest(model) == before
    result = run_cli("optimize", model, "--in-place", "--passes", "none")
    assert result.returncode == 0, result.stderr
    assert tflgraph.load(model).op_counts() == tflgraph.load(fixture("mlp")).op_counts()


def test_default_output_name_and_summary(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(fixture("k3_lstm"), model)
    result = run_cli("optimize", model)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.opt.tflite").exists()
    assert "before" in result.stdout and "after" in result.stdout and "bytes" in result.stdout


def test_unknown_pass_and_bad_arguments(tmp_path):
    assert_clean_error(
        run_cli(
            "optimize", fixture("mlp"), "--passes", "no-such-pass", "-o", tmp_path / "o.tflite"
        ),
        "no-such-pass",
    )
    assert_clean_error(run_cli("optimize"))
    assert not (tmp_path / "o.tflite").exists()


def test_messages_end_their_lines(tmp_path):
    """Each error and warning is one line ended by a newline, also when the text it reports
    has line breaks of its own, and a warning and the error after it never share a line."""
    assert_clean_error(run_cli("optimize", "a", "b"), "the output path goes after -o")
    plugin = tmp_path / "plugin.py"
    plugin.write_text('raise RuntimeError("first\\nsecond\\r\\nthird")\n')
    assert_clean_error(run_cli("passes", "--load", plugin), "first; second; third")
    src = tmp_path / "m.tflite"
    src.write_bytes(_raw_model(buffer_fields={5: RawField("inline", b"\x09\0\0\0")}))
    result = run_cli("optimize", src, "--dot-after", "cleanup=x.nope", "-o", tmp_path / "o")
    assert result.returncode == 2
    warning, error = stderr_lines(result)
    assert warning.startswith("tflgraph: warning:") and "Buffer slot 5" in warning
    assert error.startswith("tflgraph: error:") and "unknown graph format" in error


def test_inspect_json_and_passes():
    import json

    result = run_cli("inspect", fixture("k3_lstm"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["op_counts"]["WHILE"] == 1
    assert info["control_flow"][0]["op"] == "WHILE"
    assert info["subgraphs"][0]["inputs"][0]["shape"] == [1, 10, 8]
    result = run_cli("passes")
    assert result.returncode == 0 and "cleanup" in result.stdout


def test_inspect_counts_a_shared_weight_buffer_once():
    """The 10 unrolled steps of k3_lstm_unroll_bnone read one recurrent weight buffer: the
    weights line counts each buffer once, so it sums to the constants the file holds."""
    import json

    import tflgraph

    model = tflgraph.load(fixture("k3_lstm_unroll_bnone"))
    buffers = {id(t.buffer): t.buffer.nbytes for sg in model.subgraphs for t in sg.tensors
               if t.is_constant}  # fmt: skip
    readers = sum(
        1 for op in model.main.iter_ops() for t in op.inputs if t is not None and t.is_constant
    )
    assert readers > len(buffers)  # some buffers are read by several ops
    result = run_cli("inspect", fixture("k3_lstm_unroll_bnone"), "--json")
    assert result.returncode == 0, result.stderr
    assert sum(json.loads(result.stdout)["weight_bytes_by_op"].values()) == sum(buffers.values())
