"""reroll with `requantize` (optimize --requantize STEPS): a converter's int8 unrolled RNN,
every step with its own calibrated scales, becomes one int8 WHILE loop with one set of
quantization parameters per recurring value, whose outputs stay within STEPS quantization
steps of the unrolled model's in LiteRT (builtin kernels) and TFLM; without the option, or
when the bound is too tight, the model is left as it is, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fixture, tflgraph_cli

import tflgraph
from tflgraph.pipeline import run_passes
from tflgraph.rnn.reroll_requant import output_steps
from tflgraph.runtime import runtimes

PASSES = ["freeze-shapes", "fold-constants", "reroll", "fuse-lstm", "fuse-simple-rnn", "cleanup"]
# fixture -> a bound it meets (its measured error: 7, 6, 12, 8 steps) and the ops left at most
INT8 = {
    "k3_lstm_unroll_bnone_int8": (20, 25),
    "k3_gru_unroll_int8": (10, 30),
    "k3_simplernn_unroll_seq_int8": (20, 16),
    "k3_lstm_unroll_int8_floatio": (20, 25),  # float input and output: steps of its DEQUANTIZE
}


def optimized(name: str, requantize: float = 0.0):
    """(the model freeze-shapes and fold-constants give, the model after PASSES, records)."""
    before = tflgraph.load(fixture(name))
    run_passes(before, PASSES[:2], target="tflm")
    model = tflgraph.load(fixture(name))
    options = {"reroll": {"requantize": requantize}} if requantize else None
    records = run_passes(
        model, PASSES, check_each=True, explain=True, target="tflm", options=options
    )
    return before, model, records


def worst_steps(a, b, invokes: int = 7, seed: int = 1) -> dict[str, int]:
    """{runtime: largest |b - a| in quantization steps} over `invokes` random inputs invoked
    in a row without reset (LiteRT on its builtin kernels), other inputs than the pass's."""
    data_a, data_b = tflgraph.to_bytes(a), tflgraph.to_bytes(b)
    steps = output_steps(a)
    session = runtimes.Session(data_a, "litert", kernels="builtin")
    rng = np.random.default_rng(seed)
    feeds = [runtimes.random_inputs(session.inputs, rng) for _ in range(invokes)]
    worst = {}
    for rt in ("litert", "tflm"):
        want, got = (
            runtimes.run(d, feeds, rt, kernels="builtin") for d in (data_a, data_b)
        )  # fmt: skip
        worst[rt] = max(
            float(np.abs(x.astype(np.float64) - y).max()) / step
            for w, g in zip(want, got)
            for x, y, step in zip(w, g, steps)
        )
    return worst


def reasons(records) -> list[str]:
    return [e for r in records if r.name == "reroll" for e in r.explanations]


@pytest.mark.parametrize("name", INT8)
def test_without_requantize_int8_chains_are_left_alone(name):
    before, model, records = optimized(name)
    assert "WHILE" not in model.op_counts()
    why = reasons(records)
    assert any("quantized with other scales" in e and "--requantize" in e for e in why), why


@pytest.mark.parametrize("name", INT8)
def test_requantize_rerolls_into_one_int8_loop_within_the_bound(name):
    bound, most_ops = INT8[name]
    before, model, records = optimized(name, bound)
    ops = model.op_counts()
    assert ops["WHILE"] == 1 and "UNPACK" not in ops, ops
    assert sum(ops.values()) <= most_ops
    assert sum(ops.values()) < sum(before.op_counts().values()) / 3
    line = next(x for r in records if r.name == "reroll" for x in r.stats.get("layers", []))
    assert f"bound {bound}" in line and "litert" in line and "tflm" in line, line
    measured = next(r.stats["requantized_error"] for r in records if r.stats.get("layers"))
    assert measured <= bound
    worst = worst_steps(before, model)
    assert max(worst.values()) <= bound, worst


def _loop(model):
    op = next(op for op in model.main.operators if op.type == "WHILE")
    return op, op.option("body_subgraph_index")


@pytest.mark.parametrize("name", INT8)
def test_one_set_of_parameters_per_loop_carried_value(name):
    """Loop-carried values have one set of parameters on the WHILE operands and results and
    on both sides of the body; LOGISTIC and TANH keep the parameters their kernels fix; the
    step input keeps the sequence's."""
    before, model, _ = optimized(name, INT8[name][0])
    op, body = _loop(model)
    for k, (a, b) in enumerate(zip(body.inputs, body.outputs)):
        if a.is_quantized:
            q = [t.quantization for t in (op.inputs[k], op.outputs[k], a, b)]
            assert all(np.array_equal(x["scale"], q[0]["scale"]) for x in q), (k, q)
            assert all(np.array_equal(x["zero_point"], q[0]["zero_point"]) for x in q), (k, q)
            if k != len(body.inputs) - 1:  # a state starts at its zero point
                assert np.all(op.inputs[k].data == q[0]["zero_point"][0])
    fixed = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}
    for inner in body.operators:
        if inner.type in fixed:
            q = inner.outputs[0].quantization
            assert (float(q["scale"][0]), int(q["zero_point"][0])) == fixed[inner.type]
    x = next(t for t in body.operators if t.type == "GATHER").outputs[0]
    sequence = op.inputs[-1]
    assert np.array_equal(x.quantization["scale"], sequence.quantization["scale"])


def test_a_state_covers_every_step_range():
    """The LSTM's cell state c: the loop's range is the union of every step's."""
    before, model, _ = optimized("k3_lstm_unroll_bnone_int8", 20)
    _, body = _loop(model)
    c = body.inputs[2]
    lo, hi = (np.array([-128, 127]) - c.quantization["zero_point"][0]) * c.quantization["scale"][0]
    steps = [
        t.quantization
        for t in before.main.tensors
        if t.name.endswith("/add_1") and "lstm_cell" in t.name and t.is_quantized
    ]
    assert len(steps) >= 9
    for q in steps:
        s, z = float(q["scale"][0]), int(q["zero_point"][0])
        assert lo <= (-128 - z) * s + 1e-6 and (127 - z) * s <= hi + 1e-6


def test_a_bound_too_tight_leaves_the_model_unchanged_with_the_error():
    name = "k3_simplernn_unroll_seq_int8"
    _, plain, _ = optimized(name)
    _, model, records = optimized(name, 1)
    assert tflgraph.to_bytes(model) == tflgraph.to_bytes(plain)
    why = reasons(records)
    assert any("outputs differ by up to litert" in e and "(bound 1)" in e for e in why), why


def test_cli_requantize_verifies_within_the_bound_and_reports_it(tmp_path):
    out = tmp_path / "gru.tflite"
    r = tflgraph_cli("optimize", fixture("k3_gru_unroll_int8"), "-o", out, "--target", "tflm",
                     "--requantize", "10")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "requantized (--requantize 10): max error litert" in r.stdout, r.stdout
    assert "[reroll]" in r.stdout and "one WHILE loop (int8;" in r.stdout
    assert tflgraph.load(out).op_counts()["WHILE"] == 1


def test_steps_sharing_their_scales_must_give_equal_outputs_without_requantize():
    """An int8 chain whose steps share their parameters (here: set to the loop's) is one cell
    without the option, but is re-rolled only if the outputs stay equal: the first step,
    which the converter specialised for the zero state, rounds otherwise, so it stays, with
    the measured error; the option accepts that error."""
    from tflgraph.rnn.reroll_find import find_unrolled
    from tflgraph.rnn.reroll_requant import requantize
    from tflgraph.rnn.reroll_steps import sequence_steps

    def shared():
        model = tflgraph.load(fixture("k3_lstm_unroll_bnone_int8"))
        run_passes(model, PASSES[:2], target="tflm")
        chain = find_unrolled(model.main, sequence_steps(model.main)[0], exact=False)
        for t, params in requantize(chain).params.items():
            for copy in chain.copies.get(t, [t]):
                copy.quantization = params
        return model

    model = shared()
    records = run_passes(model, ["reroll"], explain=True, target="tflm")
    assert "WHILE" not in model.op_counts()
    why = reasons(records)
    assert any("quantization steps (bound 0)" in e for e in why), why
    model = shared()
    options = {"reroll": {"requantize": 5}}
    run_passes(model, ["reroll"], explain=True, target="tflm", options=options)
    assert model.op_counts()["WHILE"] == 1


def test_a_second_run_changes_nothing():
    _, model, _ = optimized("k3_gru_unroll_int8", 10)
    before = tflgraph.to_bytes(model)
    options = {"reroll": {"requantize": 10}}
    records = run_passes(model, PASSES, check_each=True, target="tflm", options=options)
    assert not any(r.changed for r in records)
    assert tflgraph.to_bytes(model) == before


def test_cli_inputs_are_what_both_checks_run_on(tmp_path):
    """--inputs: the pass's check and optimize's check run on the user's samples (here the
    zero point only, where the requantized loop gives the unrolled model's outputs exactly),
    not on random inputs over the whole range; a file that does not fit is a clean error."""
    zeros, out = tmp_path / "zeros.npz", tmp_path / "gru.tflite"
    x = tflgraph.load(fixture("k3_gru_unroll_int8")).main.inputs[0]
    zp = int(x.quantization["zero_point"][0])
    np.savez(zeros, np.full((3, *x.shape), zp, np.int8))
    args = ["optimize", fixture("k3_gru_unroll_int8"), "-o", out, "--requantize", "10"]
    r = tflgraph_cli(*args, "--inputs", zeros)
    assert r.returncode == 0, r.stderr
    assert "(3 samples, with and without reset)" in r.stdout, r.stdout
    said = r.stdout.split("requantized (--requantize 10): max error ")[1]
    measured = said.split("reroll measured ")[1].split(" ")[0]
    assert int(measured) < 6  # random inputs over the whole range: 6 steps
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((3, 7), np.int8))
    r = tflgraph_cli(*args, "--inputs", bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
