"""TFLM's arena as `optimize` measures it (tflgraph.runtime.arena) and the objective that keeps
the output's arena at most the input's (tflgraph.objective, `optimize --objective`)."""

from __future__ import annotations

import json

import pytest
from helpers import fixture

import tflgraph
from tflgraph import cli
from tflgraph.objective import keep_within
from tflgraph.runtime import runtimes, tflm_check
from tflgraph.runtime.arena import Footprint, footprints, regressions

needs_tflm = pytest.mark.skipif(not runtimes.available("tflm"), reason="needs tflite-micro")


@needs_tflm
def test_footprints_are_tflm_s_own_allocation_totals():
    """The figure is what TFLM's recording allocator reports (inspect's check asks it
    separately), and TFLM allocates the model in an arena of that size."""
    names = ["k3_lstm", "tfk_lstm_fused", "custom_op"]
    data = [fixture(n).read_bytes() for n in names]
    got = footprints(data)
    for d, fp in zip(data[:2], got[:2]):
        report = tflm_check.check(tflgraph.load(d), d, arena=False)
        assert fp.arena == report.allocations["total"] and fp.bytes == len(d)
        assert fp.allocations["TfLiteEvalTensor data"] > 0
    assert tflm_check.smallest_arena(data[1], 0) == got[1].arena
    assert got[2].arena is None and "cannot allocate" in got[2].why


def test_regressions_by_objective():
    small, big = Footprint(1000, 1000), Footprint(1005, 2000)
    assert regressions(small, big, "balanced") == ["TFLM arena 1,000 -> 2,000 bytes"]
    assert regressions(small, big, "ram") == ["TFLM arena 1,000 -> 2,000 bytes"]
    assert regressions(small, big, "size") == ["file 1,000 -> 1,005 bytes"]
    assert regressions(small, Footprint(1005, 900), "balanced") == []  # 0.5% more file
    assert regressions(small, Footprint(1020, 900), "balanced") == [
        "file 1,000 -> 1,020 bytes (more than 1%)"
    ]
    assert regressions(small, big, "latency") == []
    cannot = Footprint(100, None, why="TFLM cannot allocate it: ...")
    assert regressions(cannot, big, "balanced") == []  # legalization: nothing to lose


@needs_tflm
def test_the_last_intermediate_result_within_the_objective_is_kept():
    """Measured with TFLM: a rerun whose first pass shrinks the arena and whose second grows
    it past the input's gives the first pass's result."""
    source = fixture("k3_lstm_big").read_bytes()  # the WHILE model, 37 KB arena
    small = tflgraph.load(fixture("tfk_lstm_fused"))  # a 3.5 KB arena
    grown = tflgraph.load(source)
    tflgraph.optimize(grown, "fuse-lstm")  # fused: the whole sequence, a larger arena
    data = tflgraph.to_bytes(grown)

    def rerun(after_pass):
        after_pass("shrink", small)
        after_pass("grow", grown)

    out = keep_within(source, data, "balanced", "tflm", rerun)
    assert out.refused and out.after.arena < out.before.arena
    assert out.data == tflgraph.to_bytes(small) and "shrink" in out.kept
    kept = keep_within(source, data, "latency", "tflm", rerun)
    assert kept.data is data and kept.after.arena > kept.before.arena and not kept.refused


@needs_tflm
def test_optimize_never_writes_a_larger_arena_by_default(tmp_path, capsys):
    """fuse-lstm alone grows the arena of the T=50 u=128 last-step LSTM (the fused op writes
    the whole sequence): refused by default and by ram, kept for latency; the summary and the
    report say so, and the written file allocates in what the report says."""
    src = fixture("k3_lstm_big")
    for objective, keeps in (("balanced", False), ("ram", False), ("latency", True)):
        out, report = tmp_path / f"{objective}.tflite", tmp_path / f"{objective}.json"
        args = [str(src), "-o", str(out), "--passes", "fuse-lstm", "--report", str(report)]
        assert cli.main(["optimize", *args, "--objective", objective, "--no-verify"]) == 0
        said = capsys.readouterr().out
        fp = json.loads(report.read_text())["footprint"]
        assert fp["objective"] == objective and "TFLM arena: 37," in said
        assert footprints([out.read_bytes()])[0].arena == fp["after"]["arena"]
        fused = "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflgraph.load(out).op_counts()
        assert fused == keeps
        assert (fp["after"]["arena"] > fp["before"]["arena"]) == keeps
        assert bool(fp["refused"]) == (not keeps) == ("was not kept" in said)
        # the summary describes the written file: no pass changed it when it was refused
        assert ("changed the model: none" in said) == (not keeps)
        assert ("[fuse-lstm] WHILE" in said) == keeps
