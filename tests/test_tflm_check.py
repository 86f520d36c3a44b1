"""tflgraph.runtime.tflm_check and `inspect --target tflm`: TFLM itself says whether it runs a
model (issue 11 point 6), where it fails, the arena it needs; `--strict` gates CI (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import all_fixtures, fixture, tflgraph_cli

import tflgraph
from tflgraph import cli
from tflgraph.reference.equivalence import compare, max_error
from tflgraph.runtime import runtimes, targets, tflm_check
from tflgraph.runtime.runtimes import RuntimeUnavailable
from tflgraph.runtime.verify import ports

needs_both = pytest.mark.skipif(
    not (runtimes.available("litert") and runtimes.available("tflm")),
    reason="needs ai-edge-litert and tflite-micro",
)
TIMEOUT = 3.0  # the fixtures invoke in milliseconds; three WHILE models never finish in TFLM


def runs_in_tflm(model, data: bytes) -> bool:
    """The truth, straight from the runners: one TFLM invoke finishes and gives LiteRT's
    outputs (floats within the checker's bound, quantized integers within one step)."""
    feed = runtimes.random_inputs([p.detail() for p in ports(model, "inputs")], _rng())
    try:
        got = runtimes.run_isolated(data, [feed], "tflm", TIMEOUT, ("reset",))["reset"][0]
    except RuntimeUnavailable:
        return False
    # LiteRT's builtin kernels, as tflm_check: XNNPACK gives a reader of an LSTM's variable
    # state (onnx2tf 2.x's final h) the value from before the LSTM ran
    want = runtimes.run_isolated(data, [feed], "litert", 60, ("reset",), "builtin")["reset"][0]
    for port, a, b in zip(ports(model, "outputs"), want, got):
        if port.scale and a.dtype.kind in "iu":
            if a.shape != b.shape or max_error(a, b) > 1:
                return False
        elif compare(a, b) is not None:
            return False
    return True


def _rng():
    return np.random.default_rng(0)


@needs_both
@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.stem)
def test_inspect_agrees_with_tflm(path, capsys):
    """Runs <=> reported as running, for every fixture; --strict exits 1 exactly when not."""
    truth = runs_in_tflm(tflgraph.load(path), path.read_bytes())
    args = ["inspect", str(path), "--target", "tflm", "--json", "--strict"]
    code = cli.main(args + ["--timeout", str(TIMEOUT)])
    info = json.loads(capsys.readouterr().out)
    assert info["runs"] == info["tflm"]["runs"] == truth, info["tflm"]
    assert code == (0 if truth else 1)


@needs_both
@pytest.mark.parametrize(
    "name, node, words",
    [
        ("k3_lstm_masked", "REDUCE_ANY", "Didn't find op for builtin opcode 'REDUCE_ANY'"),
        ("dead_k3_lstm_hybrid", "FULLY_CONNECTED", "FLOAT32 with filter type: INT8"),
        ("tfk_gru_reset_before", "SPLIT_V", "has dynamic tensor"),
        ("custom_op", "CUSTOM:Erfinv", "registration"),
    ],
)
def test_allocation_failure_names_the_node_and_tflm_message(name, node, words):
    model = tflgraph.load(fixture(name))
    report = tflm_check.check(model, fixture(name).read_bytes(), TIMEOUT)
    assert report.verdict == "cannot allocate" and words in report.message
    assert len(report.nodes) == 1 and report.nodes[0]["op"] == node
    where = report.nodes[0]
    assert list(model.subgraphs[where["subgraph"]].iter_ops())[where["index"]].type == node
    assert f"node {where['index']} ({node}) of subgraph {where['subgraph']}" in report.lines()[0]


def test_the_node_tflm_names_is_found_in_the_model():
    model = tflgraph.load(fixture("tfk_gru_reset_before"))
    said = ["Op#3 (SPLIT_V) of subgraph 2 has dynamic tensor #19"]
    assert tflm_check.failing_nodes(model, said) == [{"subgraph": 2, "index": 3, "op": "SPLIT_V"}]
    said = ["Node SPLIT_V (number 3f) failed to prepare with status 1"]
    assert {"subgraph": 2, "index": 3, "op": "SPLIT_V"} in tflm_check.failing_nodes(model, said)
    assert tflm_check.failing_nodes(model, ["Node TANH (number 999f) failed"]) == []


@needs_both
def test_loops_tflm_cannot_bound_are_reported_as_they_fail():
    """k3_gru_seq allocates but never finishes; k3_lstm_seq finishes with wrong values. The
    op table has every op: the verdict comes from TFLM, the hint from the shape rules."""
    hang = tflm_check.check(
        tflgraph.load(fixture("k3_gru_seq")), fixture("k3_gru_seq").read_bytes(), 1.0
    )
    assert hang.verdict == "cannot invoke" and "did not finish within 1 s" in hang.message
    assert hang.arena_bytes
    data = fixture("k3_lstm_seq").read_bytes()
    wrong = tflm_check.check(tflgraph.load(data), data, TIMEOUT)
    assert wrong.verdict == "differs" and wrong.compared_with == "LiteRT"


@needs_both
def test_the_arena_is_the_smallest_that_allocates():
    data = fixture("k3_gru").read_bytes()
    report = tflm_check.check(tflgraph.load(data), data, TIMEOUT)
    assert report.runs and report.compared_with == "LiteRT"
    n = report.arena_bytes
    assert runtimes.call_isolated(tflm_check.allocates, (data, n), "tflm")
    assert not runtimes.call_isolated(tflm_check.allocates, (data, n - 1), "tflm")
    alloc = report.allocations
    assert alloc["total"] == alloc["head"] + alloc["tail"] and alloc["TfLiteEvalTensor data"] > 0
    assert f"TFLM arena: allocates in {n:,} bytes" in report.lines()[1]


def test_parse_allocations():
    lines = [
        "[RecordingMicroAllocator] Arena allocation total 7376 bytes",
        "[RecordingMicroAllocator] Arena allocation head 1792 bytes",
        "[RecordingMicroAllocator] 'Persistent buffer data' used 1308 bytes with alignment "
        "overhead (requested 1148 bytes for 25 allocations)",
    ]
    assert tflm_check.parse_allocations(lines) == {
        "total": 7376,
        "head": 1792,
        "Persistent buffer data": 1308,
    }


@needs_both
def test_a_batch_none_signature_is_not_called_dynamic(tmp_path, capsys):
    """A model converted with batch None stores shape [1, ...] with signature [-1, ...]: TFLM
    takes the stored shape and runs it, so nothing may say it cannot."""
    model = tflgraph.load(fixture("mlp"))
    for sg in model.subgraphs:
        for t in sg.tensors:
            if len(t.shape) and t.shape[0] == 1:
                t.shape_signature = (-1, *t.shape[1:])
    path = tmp_path / "batch_none.tflite"
    tflgraph.save(model, path)
    assert any(t.is_dynamic for t in tflgraph.load(path).main.tensors)
    assert targets.shape_problems(tflgraph.load(path)) == {"dynamic": [], "zero-size": []}
    assert cli.main(["inspect", str(path), "--target", "tflm", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "TFLM runs it" in out and "cannot hold" not in out


def test_without_tflite_micro_the_tables_judge(monkeypatch, capsys):
    monkeypatch.setattr(runtimes, "available", lambda runtime: runtime != "tflm")
    assert cli.main(["inspect", str(fixture("k3_gru_seq")), "--target", "tflm", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "TFLM not asked: tflite-micro is not installed" in out
    assert "judged from the op table" in out and "TFLM cannot hold 2 tensor(s)" in out
    assert cli.main(["inspect", str(fixture("k3_gru")), "--target", "tflm", "--strict"]) == 0


@needs_both
def test_strict_exits_1_in_a_child_process_and_0_without_strict():
    args = ["inspect", fixture("k3_lstm_masked"), "--target", "tflm"]
    proc = tflgraph_cli(*args, "--strict")
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr
    assert "TFLM cannot allocate it: node" in proc.stdout
    assert tflgraph_cli(*args).returncode == 0
    assert tflgraph_cli("inspect", fixture("mlp"), "--target", "litert", "--strict").returncode == 0
