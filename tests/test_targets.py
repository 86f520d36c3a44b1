"""tflgraph.runtime.targets: the per-runtime op tables agree with the installed runtimes; `inspect
--target` reports what TFLM cannot run; `optimize --target` reaches the passes."""

from __future__ import annotations

import json

import pytest
from helpers import fixture

import tflgraph
from tflgraph import cli
from tflgraph.errors import TflgraphError
from tflgraph.pipeline import Pass, register, run_passes, unregister
from tflgraph.runtime import runtimes, targets

# a sample across the table: ops the loop passes emit, and ops one runtime lacks
SAMPLE = [
    "DYNAMIC_UPDATE_SLICE",
    "PACK",
    "SPLIT",
    "SPLIT_V",
    "GATHER",
    "FULLY_CONNECTED",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "UNIDIRECTIONAL_SEQUENCE_RNN",  # LiteRT only
    "REDUCE_ANY",  # LiteRT only (masked RNNs)
    "SELECT_V2",
    "BROADCAST_TO",  # LiteRT resolves versions 2-4 only
    "STABLEHLO_ABS",  # neither
]


@pytest.mark.parametrize("runtime", ["tflm", "litert"])
def test_table_agrees_with_a_probe_of_the_installed_runtime(runtime):
    if not runtimes.available(runtime):
        pytest.skip(f"{runtime} not installed")
    found = targets.probe(runtime, SAMPLE)
    table = targets.TFLM_OPS if runtime == "tflm" else targets.LITERT_OPS
    assert {n for n, ok in found.items() if ok} == {n for n in SAMPLE if n in table}


def test_supports():
    assert targets.supports("litert", "UNIDIRECTIONAL_SEQUENCE_RNN")
    assert not targets.supports("tflm", "UNIDIRECTIONAL_SEQUENCE_RNN")
    assert not targets.supports("any", "UNIDIRECTIONAL_SEQUENCE_RNN")
    assert targets.supports("any", "DYNAMIC_UPDATE_SLICE")
    assert not targets.supports("any", "CUSTOM:Foo")
    with pytest.raises(TflgraphError):
        targets.supports("gpu", "ADD")


def test_unsupported_ops_of_a_masked_lstm():
    model = tflgraph.load(fixture("k3_lstm_masked"))
    assert targets.unsupported_ops(model, "tflm") == {"REDUCE_ANY": 2}
    assert targets.unsupported_ops(model, "litert") == {}


def test_inspect_target_lists_what_tflm_cannot_run(capsys):
    assert cli.main(["inspect", str(fixture("k3_lstm_masked")), "--target", "tflm"]) == 0
    assert "ops tflm cannot run: REDUCE_ANY x2" in capsys.readouterr().out
    assert cli.main(["inspect", str(fixture("k3_gru")), "--target", "tflm"]) == 0
    assert "every op type has a kernel in tflm" in capsys.readouterr().out
    cli.main(["inspect", str(fixture("k3_lstm_masked")), "--target", "tflm", "--json"])
    assert json.loads(capsys.readouterr().out)["unsupported_ops"] == {"REDUCE_ANY": 2}


def test_bad_target_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["inspect", str(fixture("k3_gru")), "--target", "gpu"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_run_passes_gives_the_target_to_every_pass():
    seen = []

    @register("test-record-target")
    class RecordTarget(Pass):
        def run(self, model):
            seen.append(self.target)
            return False

    model = tflgraph.load(fixture("mlp"))
    try:
        run_passes(model, ["test-record-target"], target="tflm")
        run_passes(model, ["test-record-target"])
        assert seen == ["tflm", "any"]
        with pytest.raises(TflgraphError):
            run_passes(model, ["test-record-target"], target="gpu")
    finally:
        unregister("test-record-target")


def test_optimize_target_reaches_the_passes(tmp_path, capsys):
    out = tmp_path / "m.tflite"
    args = ["optimize", str(fixture("dead_k3_lstm_topk")), "-o", str(out), "--no-verify"]
    assert cli.main(args + ["--target", "litert"]) == 0
    assert "has ops" not in capsys.readouterr().out
    assert cli.main(args + ["--target", "tflm"]) == 0
    assert "has ops tflm cannot run: TOPK_V2 x1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, kind",
    [
        ("k3_gru_seq", "dynamic"),
        ("k3_custom_cell", "dynamic"),
        ("tfk_gru_reset_before", "zero-size"),
    ],
)
def test_inspect_target_tflm_reports_shapes_tflm_cannot_hold_until_optimized(
    name, kind, tmp_path, capsys
):
    """All of their ops exist in TFLM, yet TFLM hangs or cannot allocate: inspect says why,
    and after `optimize --target tflm` it has nothing left to say."""
    assert targets.shape_problems(tflgraph.load(fixture(name)))[kind]
    cli.main(["inspect", str(fixture(name)), "--target", "tflm", "--timeout", "2"])
    said = capsys.readouterr().out
    assert "TFLM cannot hold" in said and "every op runs" not in said
    if runtimes.available("tflm"):  # and TFLM itself does not run it
        verdicts = ("TFLM cannot allocate it", "but cannot invoke it", "outputs differ")
        assert "TFLM runs it:" not in said and any(v in said for v in verdicts), said
    out = tmp_path / "m.tflite"
    cli.main(["optimize", str(fixture(name)), "-o", str(out), "--target", "tflm", "--no-verify"])
    assert "TFLM cannot hold" not in capsys.readouterr().out
    assert targets.shape_problems(tflgraph.load(out)) == {"dynamic": [], "zero-size": []}
    cli.main(["inspect", str(out), "--target", "tflm", "--json"])
    assert not any(json.loads(capsys.readouterr().out)["tflm_shape_problems"].values())
